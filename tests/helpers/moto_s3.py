"""A real S3 endpoint for tests and benchmarks: moto's server on 127.0.0.1, the standard AWS variables pointing at it."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Iterator

AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_PROFILE")


@contextlib.contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """Start the server, set the AWS environment (this process and its children; no AWS_PROFILE), yield it, restore it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in AWS_VARIABLES}
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield env
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
