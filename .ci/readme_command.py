"""Print README.md's command number N (1 or 2): the bash blocks under '## Two commands', as
README writes them, so that CI runs exactly what a user copies."""

import re
import sys
from pathlib import Path

readme = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
section = readme.split("\n## Two commands\n", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
if len(blocks) != 2:
    sys.exit(f"README.md's 'Two commands' section has {len(blocks)} bash blocks, not 2")
print(blocks[int(sys.argv[1]) - 1].strip())
