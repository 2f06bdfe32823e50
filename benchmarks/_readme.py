"""Writing a benchmark's section of benchmarks/README.md, between its HTML comment markers."""

import re
from pathlib import Path

README = Path(__file__).with_name("README.md")


def write_section(mark, lines, readme=README):
    """Replace the block ``<!-- mark --> ... <!-- /mark -->`` by ``lines`` (append if absent)."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = "\n".join([f"<!-- {mark} -->", *lines, f"<!-- /{mark} -->"])
    pattern = re.compile(rf"<!-- {re.escape(mark)} -->.*<!-- /{re.escape(mark)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)
