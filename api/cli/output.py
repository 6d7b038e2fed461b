"""What every verb prints with: the two consoles, state colours, the error a user can fix,
and the ``--json`` switch."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from breaker import State

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

STATE_STYLE = {
    State.CLOSED: "green", State.OPEN: "bold red", State.HALF_OPEN: "yellow", State.FORCED_OPEN: "bold magenta",
    State.DISABLED: "dim", State.METRICS_ONLY: "cyan",
}

#: ``--json`` on the verbs whose answer mirrors an HTTP endpoint's.
Json = Annotated[bool, typer.Option("--json", help="One JSON object, as the HTTP endpoint answers.")]


class UserError(Exception):
    """Something the user can fix; printed as one line, exit status ``code``.

    Parameters:
      message: the line printed.
      code: the exit status (2: bad input, 1: the rest).
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def print_json(data: Any) -> None:
    """``data`` as one line of JSON on standard output (plain ``print``: no markup, no wrap).

    Parameters:
      data: anything ``json.dumps`` takes.
    """
    print(json.dumps(data))


def styled_state(state: State) -> str:
    """A breaker state's name in its colour (rich markup).

    Parameters:
      state: the state.
    """
    return f"[{STATE_STYLE.get(state, '')}]{state.value}[/]"
