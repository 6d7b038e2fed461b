"""A sick device is not a sick model: each model worker process's device keeps its own
record of recent calls in Redis, is ejected from its model's fleet alone when its own
evidence says so, and comes back through one probe job (docs/devices.md).

Modules, one concept each: :mod:`identity` (what a device is), :mod:`rules` (when one is
ejected, for how long, how many at once), :mod:`store` (the records and the atomic
ejection in Redis), :mod:`tracker` (a pool process judging its own calls),
:mod:`gate` (the consumer pausing an ejected worker's queue), :mod:`handoff` (a job hit by
a device fault, run elsewhere).
"""
