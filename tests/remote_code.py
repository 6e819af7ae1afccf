"""The start of a script run in a fresh Python process that cannot import this package, so a model folder must load
from the code files saved beside its weights (`trust_remote_code=True`), as on a machine without t2v2t."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import torch

WITHOUT_PACKAGE = textwrap.dedent(
    """
    import importlib.abc, sys
    import torch

    class BlockPackage(importlib.abc.MetaPathFinder):
        # This process must not see the installed package: only the code files saved beside the weights.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_t2v2t", "processing", "training"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockPackage())
    try:
        import modeling_t2v2t
    except ImportError:
        pass
    else:
        raise SystemExit("the package is importable: the test would prove nothing")
    """
)


def run_without_package(script: str, folder, videos, tmp_path) -> dict:
    """Run `script` (which starts with WITHOUT_PACKAGE and reads `argv`: folder, videos file, output file) in a fresh
    process on the model `folder` and `videos`; returns what it saved with `torch.save`."""
    torch.save(torch.from_numpy(np.stack(videos)), tmp_path / "videos.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "videos.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(tmp_path / "out.pt")
