"""Rebuild the vendored font subsets from the Noto wheels (run by hand, not by the tests).

    pip download --no-deps fontpkg-noto-sans fontpkg-noto-sans-arabic justmytype-intl-cjk -d WHEEL_DIR
    python tests/data/fonts/build_fonts.py WHEEL_DIR

Each variable font is pinned to Regular (wght 400, wdth 100) and subset to ASCII + Latin-1 + the
characters of the texts in tests/pdf_factory.py, which keeps the three files small.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont
from fontTools.varLib import instancer

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))

import pdf_factory as pf  # noqa: E402

BASE = "".join(map(chr, range(0x20, 0x7F))) + "".join(map(chr, range(0xA0, 0x100))) + "‘’“”–—…•‐‑‒−€™"
FONTS = {  # output → (wheel prefix, path inside the wheel, extra characters)
    "NotoSans-subset.ttf": ("fontpkg_noto_sans-", "fontpkg_noto_sans/files/NotoSans[wdth,wght].ttf", ""),
    "NotoSansSC-subset.ttf": ("justmytype_intl_cjk-", "justmytype_intl_cjk/fonts/ofl/notosanssc/NotoSansSC[wght].ttf",
                              pf.JAPANESE_TEXT + pf.CHINESE_TEXT + "、。，！？「」"),
    "NotoSansArabic-subset.ttf": ("fontpkg_noto_sans_arabic-", "fontpkg_noto_sans_arabic/files/NotoSansArabic[wdth,wght].ttf",
                                  pf.ARABIC_TEXT + "،؛؟"),
}


def main(wheel_dir: Path) -> None:
    for out, (prefix, member, extra) in FONTS.items():
        wheel = next(wheel_dir.glob(prefix + "*.whl"))
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as fh:
            font = TTFont(fh)
        axes = {a.axisTag: (400 if a.axisTag == "wght" else 100) for a in font["fvar"].axes}
        font = instancer.instantiateVariableFont(font, axes)
        options = subset.Options()
        options.layout_features = ["*"]
        options.name_IDs = ["*"]
        sub = subset.Subsetter(options)
        sub.populate(text=BASE + extra)
        sub.subset(font)
        font.save(HERE / out)
        print(out, (HERE / out).stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
