"""`connc check` in a directory someone prepared: the token file it is told to read is a
FIFO (or any file that is not one): refused at once, never a read that blocks past every
deadline."""

from __future__ import annotations

import os
import time
from pathlib import Path

from checkkit import run_check

from kit.build import connection, make_repo
from kit.servers.hostile import recording_server


def test_an_id_token_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    with recording_server() as sts:
        spec = {"roleArn": "arn:aws:iam::123456789012:role/r", "region": "eu-central-1",
                "stsEndpoint": sts.url() + "/", "ecrEndpoint": sts.url() + "/",
                "identity": {"audience": "sts.amazonaws.com"}}
        root = make_repo(tmp_path / "repo", connections={
            "ecr": connection("ecr", type_="aws-ecr", spec=spec, credential={})})
        fifo = tmp_path / "token.jwt"
        os.mkfifo(fifo)
        started = time.monotonic()
        ran = run_check(root, tmp_path, "--id-token-file", str(fifo), "--timeout", "3",
                        timeout=60)
    assert time.monotonic() - started < 30
    assert ran.status("ecr") == "failed"
    assert ran.message("ecr") == f"--id-token-file {fifo}: not a regular file"
    assert sts.seen == []
