"""`activescope twin ...`: serve the digital twin (or any registered instrument) over HTTP.

The root CLI registers `twin_app`; commands only parse options and call `server.serve`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from activescope.engine.errors import SpecError

twin_app = typer.Typer(help="Instruments: serve the digital twin (or any instrument) over HTTP.", no_args_is_help=True)

TOKEN_ENV = "ACTIVESCOPE_TWIN_TOKEN"


@twin_app.callback()
def twin_group() -> None:
    """Instruments: serve the digital twin (or any instrument) over HTTP."""


def _instrument_section(config: Optional[Path]) -> dict[str, Any]:
    """The instrument section from a YAML file: a mapping with `kind`, or a campaign spec with an
    `instrument:` section; the default twin without a file."""
    if config is None:
        return {"kind": "twin"}
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{config}: cannot read the instrument configuration: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("instrument"), dict):
        data = data["instrument"]
    if not isinstance(data, dict):
        raise SpecError(f"{config}: expected a mapping with the instrument's kind and options")
    return {"kind": "twin", **data}


def _token(token_file: Optional[Path]) -> str:
    """The token from `token_file` (created with a fresh token, mode 600, when missing), else
    from $ACTIVESCOPE_TWIN_TOKEN, else a fresh one printed to the terminal."""
    if token_file is not None and token_file.is_file():
        token = token_file.read_text().strip()
        if not token:
            raise SpecError(f"{token_file}: the token file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip() or secrets.token_urlsafe(32)
    if token_file is not None:
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
        typer.echo(f"token written to {token_file}")
    elif not os.environ.get(TOKEN_ENV):
        typer.echo(f"token: {token}  (clients: export {TOKEN_ENV}=...)")
    return token


@twin_app.command("serve")
def serve_command(
    config: Optional[Path] = typer.Option(None, help="YAML: an instrument section ({kind: twin, seed: 1, ...}) or a "
                                          "campaign spec with an instrument: section; default: the twin"),
    seed: Optional[int] = typer.Option(None, help="instrument seed (overrides the configuration)"),
    host: str = typer.Option("127.0.0.1", help="loopback address to listen on"),
    port: int = typer.Option(8765, help="TCP port"),
    token_file: Optional[Path] = typer.Option(None, help=f"token file (created with a fresh token when missing); "
                                              f"default: ${TOKEN_ENV} or a fresh token printed here"),
    latency_s: float = typer.Option(0.0, min=0.0, help="seconds slept per request (simulated latency)"),
    drop_every: int = typer.Option(0, min=0, help="fault injection: cut the connection of every N-th measuring request"),
    delay_every: int = typer.Option(0, min=0, help="fault injection: delay every N-th answer by --delay-s"),
    delay_s: float = typer.Option(1.0, min=0.0, help="fault injection: delay, seconds"),
    corrupt_every: int = typer.Option(0, min=0, help="fault injection: corrupt every N-th answer's body"),
) -> None:
    """Serve an instrument over HTTP on loopback (binary npy arrays, token on every request,
    idempotent request ids); stop with Ctrl-C."""
    from activescope.engine.registry import INSTRUMENTS

    from .faults import Faults
    from .server import check_loopback, serve

    check_loopback(host)
    section = _instrument_section(config)
    if seed is not None:
        section["seed"] = seed
    kind = section.pop("kind")
    instrument = INSTRUMENTS.build(kind, section, section="instrument")
    faults = Faults(drop_every=drop_every, delay_every=delay_every, delay_s=delay_s, corrupt_every=corrupt_every)
    typer.echo(f"serving {kind} on http://{host}:{port}")
    serve(instrument, _token(token_file), host=host, port=port, latency_s=latency_s, faults=faults)
