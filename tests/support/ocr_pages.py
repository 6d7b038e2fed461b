"""Realistic OCR pages for the OCR tests and the throughput benchmark: invoices, receipts
and ID cards, in English and Chinese, rendered with Pillow (deterministic per seed).

Every page knows its text: ``truth(image)`` gives the lines it was drawn with (what the
accuracy benchmark scores against). ``pages(12)`` is the throughput benchmark's set: about 20 text lines a page at scan-like sizes,
which is what a page costs in production, unlike the three-line demo pages. Chinese pages
need a CJK font (``./dev`` installs fonts-wqy-microhei); without one they are rendered in
English, and ``has_cjk()`` says so.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFont

from api.samples import cjk_font_path
from workers.fields import id_check_character

ITEMS_EN = ["Printer paper A4", "Toner cartridge", "USB-C cable 2m", "Desk lamp", "Stapler", "Notebook 80p",
            "Ballpoint pens x10", "Monitor stand", "Keyboard", "Mouse pad", "Shipping", "Service fee"]
ITEMS_ZH = ["办公用纸", "硒鼓", "数据线", "台灯", "订书机", "笔记本", "签字笔", "显示器支架", "键盘", "鼠标垫",
            "运输费", "技术服务费"]
#: The key of ``Image.info`` that holds a rendered page's lines.
TRUTH = "fusebox.truth"
NAMES_ZH = ["李伟", "王芳", "张敏", "陈静", "刘洋", "赵磊"]
CITIES_ZH = ["北京市朝阳区", "上海市浦东新区", "广州市天河区", "杭州市西湖区"]


def has_cjk() -> bool:
    return cjk_font_path() is not None


def _font(size: int, cjk: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = cjk_font_path() if cjk else None
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def _page(size: tuple[int, int], lines: list[tuple[int, str]], font_size: int, cjk: bool, top: int = 60) -> Image.Image:
    """``lines`` are (x, text) pairs, one per row."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font(font_size, cjk)
    step = int(font_size * 1.9)
    for row, (x, text) in enumerate(lines):
        draw.text((x, top + row * step), text, fill="black", font=font)
    image.info[TRUTH] = [text for _, text in lines]  # Pillow copies ``info`` through resize()
    return image


def truth(image: Image.Image) -> list[str]:
    """The lines a page of this module (or a resize of one) was drawn with, top to bottom."""
    return list(image.info[TRUTH])


def invoice_en(seed: int) -> Image.Image:
    rng = random.Random(seed)
    lines = [(80, f"INVOICE No. INV-2026-{rng.randint(10000, 99999)}"),
             (80, f"Date: 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"),
             (80, "Seller: Northwind Trading Ltd."), (80, f"Tel: +86 138 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"),
             (80, "Bill to: Contoso Office Supplies"), (80, "Description          Qty    Amount")]
    total = 0.0
    for item in rng.sample(ITEMS_EN, 9):
        qty, price = rng.randint(1, 20), rng.randint(100, 99999) / 100
        total += qty * price
        lines.append((80, f"{item}   {qty}   ${qty * price:,.2f}"))
    lines += [(80, f"Subtotal: ${total:,.2f}"), (80, f"VAT 13%: ${total * 0.13:,.2f}"),
              (80, f"Total: ${total * 1.13:,.2f}"), (80, "Payment due within 30 days"),
              (80, "Thank you for your business")]
    return _page((1240, 1754), lines, 34, cjk=False, top=100)


def invoice_zh(seed: int) -> Image.Image:
    rng = random.Random(seed)
    if not has_cjk():
        return invoice_en(seed + 1000)
    lines = [(80, "增值税普通发票"), (80, f"发票代码 {rng.randint(10**11, 10**12 - 1)}"),
             (80, f"发票号码 {rng.randint(10**7, 10**8 - 1)}"),
             (80, f"开票日期 2026年{rng.randint(1, 12)}月{rng.randint(1, 28)}日"),
             (80, f"购买方 {rng.choice(CITIES_ZH)}科技有限公司"),
             (80, f"纳税人识别号 91{rng.randint(10**15, 10**16 - 1)}")]
    total = 0.0
    for item in rng.sample(ITEMS_ZH, 8):
        qty, price = rng.randint(1, 20), rng.randint(100, 99999) / 100
        total += qty * price
        lines.append((80, f"{item} 数量 {qty} 金额 ¥{qty * price:,.2f}"))
    lines += [(80, f"合计 ¥{total:,.2f}"), (80, f"税额 ¥{total * 0.13:,.2f}"),
              (80, f"价税合计 ¥{total * 1.13:,.2f}"), (80, f"销售方电话 0{rng.randint(10, 99)}-{rng.randint(10**7, 10**8 - 1)}"),
              (80, f"开票人 {rng.choice(NAMES_ZH)}")]
    return _page((1240, 1754), lines, 34, cjk=True, top=100)


def receipt_en(seed: int) -> Image.Image:
    rng = random.Random(seed)
    lines = [(30, "GREEN LEAF MARKET"), (30, f"Store #{rng.randint(100, 999)}  Tel 021-{rng.randint(10**7, 10**8 - 1)}"),
             (30, f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(8, 21):02d}:{rng.randint(0, 59):02d}")]
    total = 0.0
    for item in rng.sample(["Milk 1L", "Bread", "Eggs x12", "Apples 1kg", "Coffee beans", "Rice 5kg", "Tea",
                             "Yogurt", "Cheese", "Butter", "Orange juice", "Bananas"], 10):
        price = rng.randint(150, 5999) / 100
        total += price
        lines.append((30, f"{item}  {price:.2f}"))
    lines += [(30, f"TOTAL  {total:.2f}"), (30, f"CASH  {total + rng.randint(0, 20):.2f}"), (30, "THANK YOU")]
    return _page((576, 1300), lines, 26, cjk=False, top=40)


def receipt_zh(seed: int) -> Image.Image:
    rng = random.Random(seed)
    if not has_cjk():
        return receipt_en(seed + 1000)
    lines = [(30, "绿叶生活超市"), (30, f"门店 {rng.randint(100, 999)} 电话 021-{rng.randint(10**7, 10**8 - 1)}"),
             (30, f"2026年{rng.randint(1, 12)}月{rng.randint(1, 28)}日")]
    total = 0.0
    for item in rng.sample(["牛奶", "面包", "鸡蛋", "苹果", "咖啡豆", "大米", "绿茶", "酸奶", "奶酪", "黄油",
                             "橙汁", "香蕉"], 10):
        price = rng.randint(150, 5999) / 100
        total += price
        lines.append((30, f"{item}  ¥{price:.2f}"))
    lines += [(30, f"合计 ¥{total:.2f}"), (30, f"实收 ¥{total + rng.randint(0, 20):.2f}"), (30, "谢谢惠顾")]
    return _page((576, 1300), lines, 26, cjk=True, top=40)


def id_card(seed: int) -> Image.Image:
    rng = random.Random(seed)
    number = f"{rng.randint(110000, 659999)}19{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    number += f"{rng.randint(100, 999)}"
    number += id_check_character(number)
    if has_cjk():
        lines = [(40, f"姓名 {rng.choice(NAMES_ZH)}"), (40, f"性别 {rng.choice(['男', '女'])} 民族 汉"),
                 (40, f"出生 19{number[8:10]}年{int(number[10:12])}月{int(number[12:14])}日"),
                 (40, f"住址 {rng.choice(CITIES_ZH)}{rng.randint(1, 300)}号"), (40, f"公民身份号码 {number}")]
        return _page((856, 540), lines, 30, cjk=True, top=50)
    lines = [(40, f"Name: {rng.choice(['Li Wei', 'Wang Fang', 'Zhang Min'])}"), (40, "Sex: F"),
             (40, f"Born: 19{number[8:10]}-{number[10:12]}-{number[12:14]}"), (40, f"ID No. {number}")]
    return _page((856, 540), lines, 30, cjk=False, top=50)


KINDS = [invoice_en, invoice_zh, receipt_en, receipt_zh, id_card]


def page_images(n: int = 12, seed: int = 0) -> list[Image.Image]:
    """``n`` pages, cycling through invoices, receipts and ID cards, English and Chinese."""
    return [KINDS[i % len(KINDS)](seed + i) for i in range(n)]


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pages(n: int = 12, seed: int = 0) -> list[bytes]:
    """``page_images`` as PNG bytes, ready to submit."""
    return [png(image) for image in page_images(n, seed)]


def small_print(page: Image.Image, dpi: int = 300, points: float = 10.0) -> Image.Image:
    """``page``'s lines re-typeset on an A4 sheet scanned at ``dpi``, in ``points``-point type
    (what a real invoice prints: the generated pages use 16-point type at 150 dpi)."""
    lines = truth(page)
    cjk = any(ord(ch) > 0x2E80 for line in lines for ch in line)
    size = (round(8.27 * dpi), round(11.69 * dpi))
    return _page(size, [(dpi // 2, text) for text in lines], round(points * dpi / 72), cjk, top=dpi // 2)


def big_page(side: int = 6000, font_size: int = 120, seed: int = 0) -> Image.Image:
    """A valid ``side`` x ``side`` page (a poster or a 600-dpi scan) with large text lines: the
    caller's legitimate big input, under the pixel limit."""
    rng = random.Random(seed)
    lines = [(200, f"INVOICE No. INV-2026-{rng.randint(10000, 99999)}"), (200, "Date: 2026-11-24"),
             (200, f"Total: ${rng.randint(100, 9999)}.50"), (200, "Northwind Trading Ltd."),
             (200, f"Phone: +86 138 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}")]
    return _page((side, side), lines, font_size, cjk=False, top=300)


def line_crop(text: str, height: int, cjk: bool = False, margin: float = 0.12) -> Image.Image:
    """A tight crop of one printed line, ``height`` pixels high: what a caller sends after
    cutting a field out of a form. Rendered large, cropped to the ink with ``margin`` (a
    share of the ink's height) on every side, then scaled down to ``height``."""
    font = _font(64, cjk)
    canvas = Image.new("RGB", (64 * (len(text) + 4), 192), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((64, 48), text, fill="black", font=font)
    left, top, right, bottom = draw.textbbox((64, 48), text, font=font)
    pad = round((bottom - top) * margin)
    crop = canvas.crop((left - pad, top - pad, right + pad, bottom + pad))
    width = max(1, round(crop.width * height / crop.height))
    out = crop.resize((width, height), Image.Resampling.LANCZOS)
    out.info[TRUTH] = [text]
    return out
