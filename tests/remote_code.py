"""The start of a script run in a fresh Python process that cannot import this package, so a model folder must load
from the code files saved beside its weights (`trust_remote_code=True`), as on a machine without t2v2t."""

import textwrap

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
