"""The process of ``prefect_api.LocalAPI``: Prefect's API server (uvicorn on Prefect's ``create_app``)
that ends with the command that started it, however that command ends.

The command keeps the write end of this process's standard input open and never writes to it. When
the command exits — normally, on Ctrl-C, or killed with ``kill -9`` — the pipe closes, the read below
returns, and the server exits with it: a killed nightly run or schedule leaves no server behind.

Usage: ``python -m healthqa.pipelines.api_server [uvicorn's options]``.
"""

import os
import sys
import threading


def _exit_with_parent() -> None:
    sys.stdin.buffer.read()  # returns at end of file: the command has ended
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    from uvicorn.main import main

    main(prog_name="uvicorn")
