"""A Gluon kernel compiled for sm_90 without a GPU, in a fresh interpreter (Gluon cannot compile
under TRITON_INTERPRET, which the CPU test run sets)."""
import json
import os
import subprocess
import sys


def build(module: str, *args) -> tuple[str, int]:
    """(SASS, shared memory bytes) of attn_dse.gpu.MODULE.sm90_build(*args)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = (f"import json; from attn_dse.gpu.{module} import sm90_build; "
            f"b = sm90_build({', '.join(map(repr, args))}); print(json.dumps([b['sass'], b['shared']]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    sass, shared = json.loads(run.stdout.strip().splitlines()[-1])
    return sass, shared
