"""Run one benchmark's measure(**kwargs) in a fresh interpreter and write its result as JSON:

    python bench/_child.py MODULE '{"baud": 9600}' OUT.json

`make bench` runs every figure this way, so no benchmark's threads, imports or GIL traffic
disturb the next one."""

import importlib
import json
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here.parent), str(here), str(here.parent / "tests")]
    module, kwargs, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    result = importlib.import_module(module).measure(**kwargs)
    Path(out).write_text(json.dumps(result, default=str))
