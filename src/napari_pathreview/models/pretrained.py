"""ImageNet weights for timm backbones: from timm's hub, a local file or a local folder.

Hospitals often run without internet, so every backbone can take its weights from disk:
``pretrained_path=`` (a file or a folder) or ``$PATHREVIEW_PRETRAINED_DIR`` (a folder). Only
safetensors are read; pickles (.bin, .pth, .ckpt) can execute code when loaded and are refused.
:func:`locate_weights` is the one lookup (local file, else timm's hub, asked once and briefly),
used both by the up-front check before training and by the loading itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from napari_pathreview.errors import WeightsError

if TYPE_CHECKING:  # torch stays unimported until weights are actually loaded
    from torch import nn

PRETRAINED_DIR_ENV = "PATHREVIEW_PRETRAINED_DIR"
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pth", ".pt", ".ckpt", ".pkl", ".pickle")
WRAPPER_PREFIXES: tuple[str, ...] = ("model.", "module.")
#: How long the hub may take to answer the one request that tells whether it can serve weights
#: (huggingface_hub's own download retries for about 50 s before giving up).
HUB_PROBE_TIMEOUT_S = 5.0
#: What timm fetches from a hub repository without a ``hf_hub_filename``, in its order.
HUB_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")

logger = logging.getLogger(__name__)


def readable_as_umask(path: Path) -> Path:
    """Give a weights file the permissions any new file gets (``0o666`` less the umask).

    safetensors writes through a private temporary file (mode 0600), so without this the
    weights a model's card points to could be read by their owner only: a shared registry,
    an exported folder or converted weights handed to a colleague would fail with
    'Permission denied' while card.yaml beside them reads fine.
    """
    os.chmod(path, 0o666 & ~_umask())
    return path


def _umask() -> int:
    """The process umask, read without changing it where the OS tells (Linux), since setting
    it to read it back would briefly affect files other threads create."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            lines = [line for line in status if line.startswith("Umask:")]
    except OSError:  # not Linux
        lines = []
    if lines:
        return int(lines[0].split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def pickle_refusal(path: Path, arch: str | None = None) -> WeightsError:
    """The error for a pickle weight file, with the command that converts it to safetensors.

    ``arch`` (the timm architecture the file should hold) completes the command; without it
    the user fills it in. pathreview itself never unpickles a file it was not told to convert.
    """
    target = arch.split(".")[0] if arch else "TIMM_ARCH"
    return WeightsError(
        f"{path} is a pickle ({path.suffix}); loading pickles can run arbitrary code, so only "
        "safetensors are read. Convert it once, where you trust the file: "
        f"`pathreview models convert-weights {path} --arch {target} --out FOLDER`, then give "
        f"FOLDER (or FOLDER/{target}.safetensors) as pretrained_path or ${PRETRAINED_DIR_ENV}"
    )


def _candidates(folder: Path, timm_name: str) -> list[Path]:
    """Where a folder may hold a backbone's weights: our naming and the HF/timm hub naming."""
    base = timm_name.split(".")[0]
    names = [timm_name] if base == timm_name else [timm_name, base]
    found: list[Path] = []
    for name in names:
        found += [folder / f"{name}.safetensors", folder / name / "model.safetensors"]
        found += [folder / f"timm--{name}" / "model.safetensors"]
    return found


def find_local_weights(timm_name: str, pretrained_path: str | Path | None = None) -> Path | None:
    """The local safetensors file for ``timm_name``, or None when no local source is configured.

    Raises:
        WeightsError: the configured place exists but holds no usable file, or only a pickle.
    """
    if pretrained_path is not None:
        source, how = Path(pretrained_path).expanduser(), "pretrained_path"
    elif os.environ.get(PRETRAINED_DIR_ENV):
        source, how = Path(os.environ[PRETRAINED_DIR_ENV]).expanduser(), f"${PRETRAINED_DIR_ENV}"
    else:
        return None
    if source.is_file():
        return _check_safetensors(source, timm_name)
    if not source.is_dir():
        if pretrained_path is None:  # an env folder that does not exist: fall through to the hub
            logger.warning("%s=%s is not a folder; ignoring it", PRETRAINED_DIR_ENV, source)
            return None
        raise WeightsError(f"{how} {source} does not exist; give a .safetensors file or a folder")
    for candidate in _candidates(source, timm_name):
        if candidate.is_file():
            return candidate
    pickles = [
        p for p in source.glob(f"{timm_name.split('.')[0]}*") if p.suffix.lower() in PICKLE_SUFFIXES
    ]
    if pickles:
        raise pickle_refusal(pickles[0], timm_name)
    if pretrained_path is None:
        return None
    wanted = ", ".join(str(p.relative_to(source)) for p in _candidates(source, timm_name)[:2])
    raise WeightsError(f"no weights for {timm_name} in {source}; expected one of: {wanted}")


def _check_safetensors(path: Path, timm_name: str) -> Path:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise pickle_refusal(path, timm_name)
    if path.suffix.lower() != ".safetensors":
        raise WeightsError(f"{path} is not a .safetensors file; only safetensors weights are read")
    return path


def read_state(path: Path) -> dict:
    """Tensors of a safetensors file, without a wrapper's "model."/"module." prefix."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path} is not a readable safetensors file: {error}") from error
    for prefix in WRAPPER_PREFIXES:  # files saved from a wrapper (ours or DDP) carry a prefix
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def load_state_checked(
    model: nn.Module,
    state: dict,
    source: object,
    classifier: str | None = None,
    allow_missing: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``model``: strict, except for the classifier and ``allow_missing`` keys.

    The classifier is skipped when its shape differs (ImageNet's 1000 classes vs ours), as timm
    does; keys containing an ``allow_missing`` fragment are new layers the source cannot have.
    Anything else missing, unexpected or mis-shaped is an error, so a wrong file cannot half-load.
    """
    state = dict(state)
    own = model.state_dict()

    def is_head(key: str) -> bool:
        return bool(classifier) and key.startswith(classifier + ".")

    for key in [k for k in state if is_head(k)]:
        if key not in own or own[key].shape != state[key].shape:
            del state[key]
    missing = [
        k
        for k in own
        if k not in state and not is_head(k) and not any(f in k for f in allow_missing)
    ]
    unexpected = [k for k in state if k not in own]
    bad_shape = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        raise WeightsError(
            f"{source} does not fit {type(model).__name__}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {bad_shape[:3]} — "
            "is it for another architecture?"
        )
    model.load_state_dict(state, strict=False)
    logger.info("loaded %d pretrained tensors from %s", len(state), source)


def locate_weights(timm_name: str, pretrained_path: str | Path | None = None) -> Path | None:
    """Where ``timm_name``'s pretrained weights come from: a local safetensors file, or None
    for timm's hub, which then holds them in its cache or answered one short request.

    The single lookup behind the check made before any work (``require_pretrained``) and the
    loading itself, so a run that cannot have its weights is refused in seconds, not after the
    data are decoded and the hub's downloads have retried for a minute.

    Raises:
        WeightsError: no source has them; the message names the places looked in and the fixes.
    """
    local = find_local_weights(timm_name, pretrained_path)
    if local is not None:
        return local
    problem = _hub_problem(timm_name)
    if problem is None:
        return None
    raise WeightsError(
        f"no pretrained weights for {timm_name} on this machine. Looked in: "
        f"{_local_places(timm_name)}; {problem}. Either put {_base(timm_name)}.safetensors in a "
        f"folder and set {PRETRAINED_DIR_ENV}=FOLDER or pass pretrained_path=FOLDER (a .pth/.bin "
        f"converts with `pathreview models convert-weights FILE --arch {_base(timm_name)} --out "
        "FOLDER`), or connect to the hub (or fill its cache), or do without them "
        "(pretrained=False; in a recipe model.pretrained: false)"
    )


def _base(timm_name: str) -> str:
    return timm_name.split(".")[0]


def _local_places(timm_name: str) -> str:
    """The local places ``find_local_weights`` read for the default (environment) source."""
    folder = os.environ.get(PRETRAINED_DIR_ENV)
    if not folder:
        return f"${PRETRAINED_DIR_ENV} (not set)"
    source = Path(folder).expanduser()
    if not source.is_dir():
        return f"${PRETRAINED_DIR_ENV}={source} (not a folder)"
    names = ", ".join(str(p.relative_to(source)) for p in _candidates(source, timm_name))
    return f"${PRETRAINED_DIR_ENV}={source} (none of {names})"


def _hub_problem(timm_name: str) -> str | None:
    """Why timm's hub cannot give ``timm_name``'s weights now, or None when it can.

    Where timm would fetch them from is timm's own rule (``_resolve_pretrained_source`` over
    the name's ``pretrained_cfg``), so this check and ``timm.create_model`` cannot disagree.
    """
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(timm_name)
    except RuntimeError as error:  # a tag the architecture does not have
        return f"timm's hub: {error}"
    source, where = _pretrained_source(cfg.to_dict()) if cfg else ("", "")
    if source == "hf-hub":
        return _hf_problem(*where) if isinstance(where, tuple) else _hf_problem(where)
    if source == "url":
        return _url_problem(where)
    if source in ("file", "local-dir"):
        return None if Path(where).exists() else f"timm's configured file {where} (absent)"
    return f"timm's hub (timm has no pretrained weights for {timm_name})"


def _pretrained_source(cfg: dict) -> tuple[str, object]:
    """(kind, location) timm loads ``cfg``'s weights from: timm's private rule where this timm
    has it (it is not public API), else the same rule's common case read from the config."""
    try:
        from timm.models._builder import _resolve_pretrained_source
    except ImportError:
        _resolve_pretrained_source = None
    if _resolve_pretrained_source is not None:
        return _resolve_pretrained_source(cfg)
    if cfg.get("file"):
        return "file", cfg["file"]
    if cfg.get("hf_hub_id"):
        name = cfg.get("hf_hub_filename")
        return "hf-hub", (cfg["hf_hub_id"], name) if name else cfg["hf_hub_id"]
    return ("url", cfg["url"]) if cfg.get("url") else ("", "")


def _hf_problem(hub_id: str, filename: str | None = None) -> str | None:
    """None when the Hugging Face cache holds the file timm loads or the hub answers for it.

    One HEAD request with a short timeout and no retries; ``HF_HUB_OFFLINE`` sends none.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.utils import EntryNotFoundError

    repo, _, revision = hub_id.partition("@")
    files = (filename,) if filename else HUB_FILES
    for name in files:
        if isinstance(try_to_load_from_cache(repo, name, revision=revision or None), str):
            return None
    where = f"the Hugging Face cache {constants.HF_HUB_CACHE} and hub {constants.ENDPOINT}/{repo}"
    if constants.HF_HUB_OFFLINE:
        return f"{where} (not in the cache; HF_HUB_OFFLINE is set)"
    for name in files:
        url = hf_hub_url(repo, name, revision=revision or None)
        try:
            get_hf_file_metadata(url, timeout=HUB_PROBE_TIMEOUT_S)
        except EntryNotFoundError:  # not in this repository: timm tries the next name
            continue
        except Exception as error:  # noqa: BLE001 (its transport errors differ by version)
            return f"{where} (not in the cache; {_reason(error)})"
        return None
    return f"{where} (the repository holds none of {', '.join(files)})"


def _url_problem(url: str) -> str | None:
    """None when torch's hub cache holds ``url`` or the server answers a short HEAD request."""
    import urllib.request

    from timm.models._hub import check_cached_file

    if check_cached_file(url, check_hash=False):
        return None
    try:
        urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S
        ).close()
    except OSError as error:  # URLError, timeouts and refused connections are OSErrors
        return f"torch's hub cache and {url} (not cached; {_reason(error)})"
    return None


def _reason(error: Exception) -> str:
    """How one short request failed, in a line (hub errors span several)."""
    lines = str(error).strip().splitlines()
    said = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return f"a {HUB_PROBE_TIMEOUT_S:g}-second request failed, {said}"


def hub_error(timm_name: str, error: Exception) -> WeightsError:
    """The offline error: names the hub and both local ways (argument and environment)."""
    return WeightsError(
        f"could not fetch ImageNet weights for {timm_name} from timm's hub "
        f"({error.__class__.__name__}). Either connect to the internet (or fill the Hugging Face "
        f"cache), or put {timm_name}.safetensors in a folder and pass pretrained_path=FOLDER "
        f"(a file works too) or set {PRETRAINED_DIR_ENV}=FOLDER; or use pretrained=False."
    )


def pretrained_state(timm_name: str, pretrained_path: str | Path | None = None) -> tuple[dict, str]:
    """ImageNet weights of ``timm_name`` as a state dict, and where they came from.

    For architectures that reuse a timm model's weights in a modified network (SSResNeXt from
    SE-ResNeXt50): local safetensors first, then timm's hub.
    """
    import timm

    local = locate_weights(timm_name, pretrained_path)
    if local is not None:
        return read_state(local), str(local)
    try:
        model = timm.create_model(timm_name, pretrained=True)
    except (OSError, ValueError, RuntimeError) as error:
        raise hub_error(timm_name, error) from error
    return model.state_dict(), f"timm hub ({timm_name})"


def create_timm(
    timm_name: str,
    *,
    pretrained: bool = False,
    pretrained_path: str | Path | None = None,
    **kwargs: object,
) -> nn.Module:
    """``timm.create_model`` with local-first, safetensors-only, offline-aware weight loading.

    Args:
        timm_name: timm architecture name (optionally with a ``.tag``).
        pretrained: Load ImageNet weights (local source first, then timm's hub).
        pretrained_path: A .safetensors file or a folder; implies ``pretrained``.
        **kwargs: Passed to ``timm.create_model`` (num_classes, drop_rate, ...).

    Raises:
        WeightsError: no local file and the hub is unreachable (the message names both ways).
    """
    import timm

    if not pretrained and pretrained_path is None:
        return timm.create_model(timm_name, pretrained=False, **kwargs)
    local = locate_weights(timm_name, pretrained_path)
    if local is not None:
        model = timm.create_model(timm_name, pretrained=False, **kwargs)
        classifier = (model.pretrained_cfg or {}).get("classifier")
        load_state_checked(model, read_state(local), local, classifier)
        return model
    try:
        return timm.create_model(timm_name, pretrained=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as error:
        raise hub_error(timm_name, error) from error
