"""`r1lab serve`: flags -> r1lab.serve.run_server."""
from __future__ import annotations

from typing import Optional

import typer

from r1lab.cli.errors import reported


def serve(
    model: str = typer.Option(..., help="Model alias, local checkpoint dir or hub id."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: Optional[str] = typer.Option(None, envvar="R1LAB_API_KEY",
                                          help="Require 'Authorization: Bearer KEY' (or set R1LAB_API_KEY)."),
    served_model_name: Optional[str] = typer.Option(None, help="Model id clients send; default: the model's name."),
    think_prefill: bool = typer.Option(True, "--think-prefill/--no-think-prefill",
                                       help="Open every reply with '<think>\\n' so the model thinks first."),
    max_tokens: int = typer.Option(1024, help="Default max_tokens for requests that set none."),
    max_batch: int = typer.Option(64, help="Sequences decoded together."),
    max_queue: int = typer.Option(256, help="Requests allowed to wait; more get HTTP 429."),
    threads: Optional[int] = typer.Option(None, help="Torch CPU threads (default: one per core)."),
    max_body_mb: float = typer.Option(8.0, help="Largest request body in MiB; larger ones get HTTP 413."),
):
    """OpenAI-compatible chat server: reasoning_content beside content, streaming, a chat page at /."""
    import importlib.util

    with reported():
        missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"r1lab serve needs {' and '.join(missing)}: pip install 'r1lab[serve]'")
        if max_body_mb <= 0:
            raise ValueError(f"--max-body-mb must be > 0, got {max_body_mb}")
        from r1lab.serve.app import run_server

        run_server(model, host=host, port=port, api_key=api_key, served_model_name=served_model_name,
                   think_prefill=think_prefill, default_max_tokens=max_tokens, max_batch=max_batch,
                   max_waiting=max_queue, threads=threads, max_body_bytes=int(max_body_mb * 2**20))
