"""nbval waits only 5 s for a cell's output once the kernel has replied; on a busy two-core machine that is
sometimes too short (a cell that ran fine fails with "Timeout of 5 seconds exceeded waiting for output"),
so every notebook cell gets 60 s. The execution limit itself stays ``--nbval-cell-timeout``."""

OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S
