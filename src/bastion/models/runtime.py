"""The embedded guard model: a two-tier cascade that runs on a CPU with ONNX Runtime and NumPy.

Tier 1: logistic regressions over hashed word-piece unigrams+bigrams and, in newer models, a static
embedding distilled from the encoder (microseconds) settle clearly benign short prompt windows and response
windows that are clearly neither harmful nor refusals. Tier 2: all-MiniLM-L6-v2
(int8 ONNX) sentence embeddings + small NumPy heads, for everything else. Long texts are split into overlapping windows over their whole length;
the score of a text is the maximum over its windows.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from . import GuardModel, ModelLoadError, PromptScores, ResponseScores
from .onnx_output import with_output

WINDOW = 126  # content tokens per window (+ [CLS] and [SEP] = 128)
STRIDE = 96  # windows overlap by WINDOW - STRIDE tokens, so a phrase cut at a boundary is seen whole
CLS, SEP, PAD = 101, 102, 0
N_HASH = 1 << 18
VOCAB = 30522
PAIR_CTX = 40  # prompt tokens kept as context in front of each response window
PAIR_OPENING = 16  # reply tokens carried into every later window of the reply
PAIR_CTX_HEAD = 8  # of a longer prompt: its first 8 tokens and its last PAIR_CTX - 8 (see pair_ids)
SUPPORTED_FORMAT = 3  # the newest manifest format this runtime reads (train.fit writes it)
CASCADE_MAX_TOKENS = 64  # longer prompt and response windows always reach the encoder (see score_prompts)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def effective_threads(threads: int | None) -> int:
    """The runtime threads a model opened with `threads` uses: the argument, else $BASTION_THREADS, else the
    cores (at most 4)."""
    return threads or int(os.environ.get("BASTION_THREADS", "0")) or min(4, os.cpu_count() or 1)


def _unopenable(model_dir: Path) -> str:
    """Which of the encoder's two files failed to open (only called after one did)."""
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except Exception:  # noqa: BLE001 - tokenizers raises bare exceptions
        return "tokenizer.json"
    return "encoder.onnx"


class Encoder:
    """Tokenizer + int8 MiniLM sentence encoder. Thread-safe; one ORT session per process."""

    def __init__(self, model_dir: Path, threads: int | None = None, spin: bool = True,
                 hidden: str | None = None) -> None:
        """`hidden`: the name of the graph's last token-state tensor, exposed as a second output so that
        `embed_spans` can pool spans of a window (the attack check's span head; see onnx_output)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        so = ort.SessionOptions()
        n = effective_threads(threads)
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:  # busy-waiting threads hurt badly on an oversubscribed machine (batch jobs, training)
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = model_dir / "encoder.onnx"
        model = with_output(path.read_bytes(), hidden) if hidden else str(path)
        self.session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        self.threads = n
        self.hidden = hidden
        # embed() fetches the pooled output only: the token states are not copied out unless spans are wanted
        self._pooled_output = [self.session.get_outputs()[0].name]

    def windows(self, texts: Sequence[str], max_windows: int | None = None,
                runtime: bool = True) -> tuple[list[np.ndarray], list[int]]:
        """Token-id windows covering each text entirely (unless max_windows caps it, for training). Windows start
        every STRIDE tokens; the last can be as short as WINDOW - STRIDE + 1 tokens.

        `runtime` splits each run of over 100 letters (which the tokenizer reads as one unknown token) into words
        first; `runtime=False` is the text as the shipped model was trained and calibrated on, kept so that builds
        reproduce."""
        if runtime:
            texts = [_split_long_words(t) for t in texts]
        encs = self.tok.encode_batch(list(texts), add_special_tokens=False)
        wins: list[np.ndarray] = []
        owner: list[int] = []
        for i, e in enumerate(encs):
            ids = np.asarray(e.ids, dtype=np.int64)
            starts = range(0, len(ids) - WINDOW + STRIDE, STRIDE) if len(ids) > WINDOW else [0]
            for k, s in enumerate(starts):
                if max_windows is not None and k >= max_windows:
                    break
                wins.append(ids[s : s + WINDOW])
                owner.append(i)
        return wins, owner

    def embed(self, wins: Sequence[np.ndarray], batch: int = 32) -> np.ndarray:
        """Embed content windows ([CLS] and [SEP] are added)."""
        return self.embed_full([[CLS, *w.tolist(), SEP] for w in wins], batch=batch)

    def embed_full(self, seqs: Sequence[Sequence[int]], batch: int = 32) -> np.ndarray:
        """Embed complete token sequences (special tokens included), batching by length."""
        out = np.zeros((len(seqs), 384), dtype=np.float32)
        for idx, (pooled,) in self._run(seqs, batch, self._pooled_output):
            out[idx] = pooled
        return out

    def embed_spans(self, wins: Sequence[np.ndarray], size: int, stride: int,
                    batch: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
        """Window embeddings (as `embed`) and, per window, the embeddings of its spans of `size` content tokens
        every `stride` tokens (`span_vectors`). Needs an encoder opened with `hidden`."""
        if not self.hidden:
            raise ValueError("span embeddings need an encoder opened with its token-state output (hidden=...)")
        seqs = [[CLS, *w.tolist(), SEP] for w in wins]
        out = np.zeros((len(seqs), 384), dtype=np.float32)
        spans: list[np.ndarray] = [np.zeros((0, 384), dtype=np.float32)] * len(seqs)
        for idx, (pooled, states) in self._run(seqs, batch, None):
            out[idx] = pooled
            for r, i in enumerate(idx):
                spans[i] = span_vectors(states[r], len(seqs[i]) - 2, size, stride)
        return out, spans

    def _run(self, seqs: Sequence[Sequence[int]], batch: int,
             outputs: list[str] | None) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """(indices, session outputs: `outputs`, or all) per batch of sequences of similar length (padding kept
        small)."""
        order = np.argsort([len(q) for q in seqs], kind="stable")
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            L = max(len(seqs[i]) for i in idx)
            ids = np.full((len(idx), L), PAD, dtype=np.int64)
            mask = np.zeros((len(idx), L), dtype=np.int64)
            for r, i in enumerate(idx):
                q = seqs[i]
                ids[r, : len(q)] = q
                mask[r, : len(q)] = 1
            yield idx, self.session.run(outputs, {"input_ids": ids, "attention_mask": mask})


_LONG_LETTERS = re.compile(r"[^\W\d_]{101,}")
_CASE_CHANGE = re.compile(r"(?<=[a-z])(?=[A-Z])")
MAX_WORD = 100  # the tokenizer's max_input_chars_per_word: a longer word is one [UNK]


def _split_long_words(text: str) -> str:
    """`text` with each run of over 100 letters split at its case changes ("IgnoreAllPrevious...") and then into
    pieces of at most 100 letters, so the tokenizer reads it instead of one unknown token."""
    if len(text) <= MAX_WORD or not _LONG_LETTERS.search(text):
        return text

    def split(m: re.Match[str]) -> str:
        parts = _CASE_CHANGE.sub(" ", m.group()).split(" ")
        return " ".join(p[i : i + MAX_WORD] for p in parts for i in range(0, len(p), MAX_WORD))

    return _LONG_LETTERS.sub(split, text)


def span_vectors(states: np.ndarray, n: int, size: int, stride: int) -> np.ndarray:
    """L2-normalised means of the token states of `size`-token spans of a window's `n` content tokens (states[1:n+1];
    [CLS] and [SEP] left out), every `stride` tokens, the last span ending at the last token; a window of at most
    `size` tokens is one span."""
    c = states[1 : 1 + n].astype(np.float32)
    if n <= size:
        starts, width = np.array([0]), max(1, n)
    else:
        starts, width = np.unique(np.append(np.arange(0, n - size + 1, stride), n - size)), size
    cs = np.concatenate([np.zeros((1, c.shape[1]), dtype=np.float32), np.cumsum(c, axis=0)])
    v = (cs[np.minimum(starts + width, n)] - cs[starts]) / width
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


def span_scores(head: MLP, pooled: np.ndarray, spans: Sequence[np.ndarray]) -> np.ndarray:
    """A span head's window scores: the maximum of the head over each window's embedding and its span embeddings
    (multiple-instance pooling: an injection of a dozen tokens decides its window however much text surrounds it)."""
    if not len(pooled):
        return np.zeros(0, dtype=np.float32)
    inst = np.concatenate([np.concatenate([pooled[i : i + 1], s]) for i, s in enumerate(spans)])
    starts = np.cumsum([0] + [1 + len(s) for s in spans[:-1]])
    return np.maximum.reduceat(head(inst), starts).astype(np.float32)


def pair_ids(enc: Encoder, prompt: str, response: str, runtime: bool = True) -> list[list[int]]:
    """[CLS] prompt-context [SEP] response-window [SEP] sequences covering the whole response.

    A prompt longer than PAIR_CTX tokens keeps its opening and its end: the request a reply answers is usually at
    the end (the last turn of a conversation, the question after a pasted document, the request after a jailbreak
    template). On the held-out Yi-6B replies, keeping only the opening gave response-harm F1 0.82 with a document in
    front of the request and 0.80 inside a jailbreak template; keeping both, 0.86 and 0.85 (0.90 plain either way;
    docs/BENCHMARKS.md).

    Every window after the first starts with the reply's first PAIR_OPENING tokens, so the later windows of a long
    refusal that goes on to a same-topic alternative are judged with the refusal in view (harmless held-out Yi-6B
    replies flagged, against hand labels: 38% -> 34%, with the encoder fine-tuned on these windows). `runtime`:
    over-long words split, as in `Encoder.windows`."""
    if runtime:
        prompt, response = _split_long_words(prompt), _split_long_words(response)
    p = enc.tok.encode(prompt, add_special_tokens=False).ids
    if len(p) > PAIR_CTX:
        p = p[:PAIR_CTX_HEAD] + p[len(p) - (PAIR_CTX - PAIR_CTX_HEAD) :]
    r = enc.tok.encode(response, add_special_tokens=False).ids
    size = WINDOW - len(p) - 1
    out = [[CLS, *p, SEP, *r[:size], SEP]]
    if len(r) <= size:
        return out
    later = size - PAIR_OPENING
    stride = max(1, (later * 3) // 4)
    s = max(1, (size * 3) // 4)
    while True:
        out.append([CLS, *p, SEP, *r[:PAIR_OPENING], *r[s : s + later], SEP])
        if s + later >= len(r):
            return out
        s += stride


def pair_windows(enc: Encoder, prompts: Sequence[str], responses: Sequence[str],
                 max_windows: int | None = None, runtime: bool = True) -> tuple[list[list[int]], list[int]]:
    """Pair sequences covering each response (capped at `max_windows` each, for training) and their owners."""
    seqs: list[list[int]] = []
    owner: list[int] = []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        for k, q in enumerate(pair_ids(enc, p, r, runtime)):
            if max_windows is not None and k >= max_windows:
                break
            seqs.append(q)
            owner.append(i)
    return seqs, owner


def hashed_features(win: np.ndarray) -> np.ndarray:
    """Sorted unique feature indices of a window: word-piece unigrams and hashed bigrams."""
    if len(win) == 0:
        return np.zeros(0, dtype=np.int64)
    a = win[:-1]
    b = win[1:]
    bi = VOCAB + (a * 1000003 + b * 7919) % (N_HASH - VOCAB)
    return np.unique(np.concatenate([win, bi]))


class StaticEmbedder:
    """Static token vectors distilled from the fine-tuned encoder (model2vec-style): each vocabulary entry's
    encoder embedding, centred and PCA-projected. A window's vector is the L2-normalised mean of its rows:
    microseconds instead of a transformer pass, and it keeps much of the encoder's topic structure."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table.astype(np.float32)
        self.dims = int(table.shape[1])

    def __call__(self, wins: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(wins), self.dims), dtype=np.float32)
        for i, w in enumerate(wins):
            w = np.asarray(w)
            w = w[(w != CLS) & (w != SEP) & (w != PAD)]
            if len(w):
                v = self.table[w].mean(axis=0)
                out[i] = v / (np.linalg.norm(v) + 1e-9)
        return out


class Linear:
    """Tier-1 logistic regression over L2-normalised binary hashed features (plus, in newer models, the
    static embedding of the window)."""

    def __init__(self, w: np.ndarray, b: float, v: np.ndarray | None = None) -> None:
        self.w = w.astype(np.float32)
        self.b = float(b)
        self.v = None if v is None else v.astype(np.float32)

    def logits(self, feats: Sequence[np.ndarray], dense: np.ndarray | None = None) -> np.ndarray:
        out = np.array([self.w[f].sum() / max(1.0, np.sqrt(len(f))) + self.b for f in feats], dtype=np.float32)
        if self.v is not None:
            if dense is None:
                raise ValueError("this tier-1 model needs static embeddings")
            out += dense @ self.v
        return out


class MLP:
    """Small NumPy MLP head: relu hidden layers, then a sigmoid (binary) or softmax (multi-class) output."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], softmax: bool = False) -> None:
        self.layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers]
        self.softmax = softmax

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x
        for w, b in self.layers[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = self.layers[-1]
        z = h @ w + b
        if self.softmax:
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        return _sigmoid(z[:, 0])


def _load_mlp(npz: np.lib.npyio.NpzFile, name: str, softmax: bool = False) -> MLP:
    layers = []
    k = 0
    while f"{name}.W{k}" in npz:
        layers.append((npz[f"{name}.W{k}"], npz[f"{name}.b{k}"]))
        k += 1
    if not layers:
        raise ValueError(f"model head {name!r} missing from heads.npz")
    return MLP(layers, softmax=softmax)


class CascadeModel(GuardModel):
    """The shipped default model (see docs/MODEL_CARD.md)."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        self.model_dir = model_dir
        self.threads = threads  # as asked (None: the default); kept so that a pickled Guard reloads the same way
        manifest_path = model_dir / "manifest.json"
        if not manifest_path.exists():
            raise ModelLoadError(f"{model_dir}: manifest.json: missing (not a guard model folder)")

        def bad(file: str, reason: str) -> ModelLoadError:
            return ModelLoadError(f"{model_dir}: {file}: {reason}")

        try:
            self.manifest = json.loads(manifest_path.read_text("utf-8"))
            self.version = str(self.manifest["version"])
            self.default_thresholds = {k: float(v) for k, v in dict(self.manifest["thresholds"]).items()}
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
            raise bad("manifest.json", f"unreadable ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        except KeyError as e:
            raise bad("manifest.json", f"required field {e.args[0]!r} missing") from None
        fmt = self.manifest.get("format", SUPPORTED_FORMAT)
        if not isinstance(fmt, int) or fmt > SUPPORTED_FORMAT:
            raise bad("manifest.json", f"model format {fmt!r} is newer than this Bastion reads ({SUPPORTED_FORMAT}); "
                                       "upgrade bastion-guard")
        self.cascade = self.manifest.get("cascade", {})
        self.attack_blend = float(self.manifest.get("attack_blend", 0.0))  # weight of tier 1 in the attack score
        # newer models score attacks with a span head over the encoder's token states (fit.refit_attack_span_head)
        self.span = self.manifest.get("attack_span")
        for f in ("tokenizer.json", "encoder.onnx", "heads.npz", *([self.span["file"]] if self.span else [])):
            if not (model_dir / f).is_file():
                raise bad(f, "missing")
        try:
            self.encoder = Encoder(model_dir, threads=threads, hidden=self.span["hidden"] if self.span else None)
        except Exception as e:  # noqa: BLE001 - tokenizers and onnxruntime raise bare exceptions
            raise bad(_unopenable(model_dir), f"cannot be opened ({(str(e).splitlines() or [''])[0]})") from None
        file = "heads.npz"
        try:
            self.attack_span: MLP | None = None
            if self.span:
                file = self.span["file"]
                with np.load(model_dir / file) as z:
                    self.attack_span = _load_mlp(z, "attack_span")
            file = "heads.npz"
            with np.load(model_dir / file) as z:
                # harm/attack settle prompts; response/refusal (optional, newer models) settle response windows
                self.t1 = {k: Linear(z[f"t1.{k}.w"], float(z[f"t1.{k}.b"]), z[f"t1.{k}.v"] if f"t1.{k}.v" in z else None)
                           for k in ("harm", "attack", "response", "refusal") if f"t1.{k}.w" in z}
                self.static = StaticEmbedder(z["static.table"]) if "static.table" in z else None
                self.harm = _load_mlp(z, "harm")
                # the window attack head scores attacks only in models without a span head (format 3 builds omit it)
                self.attack = None if self.attack_span is not None else _load_mlp(z, "attack")
                self.response = _load_mlp(z, "response")
                self.refusal = _load_mlp(z, "refusal")
                self.cats = _load_mlp(z, "cats", softmax=True)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise bad(file, f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        self._check_shapes(bad)

    def _check_shapes(self, bad: Callable[[str, str], ModelLoadError]) -> None:
        """Run every head once on a zero embedding, so a mismatched file fails at load, not on the first input
        that reaches the encoder."""
        x = np.zeros((1, 384), dtype=np.float32)
        heads = {"harm": (self.harm, (1,)), "response": (self.response, (1,)), "refusal": (self.refusal, (1,)),
                 "cats": (self.cats, (1, 14)), "attack": (self.attack, (1,)), "attack_span": (self.attack_span, (1,))}
        for name, (head, shape) in heads.items():
            if head is None:
                continue
            try:
                out = head(x)
            except ValueError as e:
                raise bad("heads.npz", f"head {name!r} does not fit 384-dimensional embeddings ({e})") from None
            if out.shape != shape:
                raise bad("heads.npz", f"head {name!r} gives shape {out.shape}, expected {shape}")
        vocab = self.encoder.tok.get_vocab_size()
        if self.static is not None and self.static.table.shape[0] < vocab:
            raise bad("heads.npz", f"static table has {self.static.table.shape[0]} rows for a vocabulary of {vocab}")

    @classmethod
    def load(cls, model_dir: Path, threads: int | None = None) -> CascadeModel:
        return cls(Path(model_dir), threads=threads)

    # -- tier 1 ------------------------------------------------------------------------------------
    def tier1(self, wins: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        feats = [hashed_features(w) for w in wins]
        dense = self.static(wins) if self.static is not None else None
        return _sigmoid(self.t1["harm"].logits(feats, dense)), _sigmoid(self.t1["attack"].logits(feats, dense))

    # -- prompts -----------------------------------------------------------------------------------
    def score_prompts(self, texts: Sequence[str], exact: bool = False) -> PromptScores:
        wins, owner = self.encoder.windows(texts)
        n = len(texts)
        h1, a1 = self.tier1(wins)
        harm_w, attack_w = h1.copy(), a1.copy()
        cats_w = np.zeros((len(wins), 14), dtype=np.float32)
        lo_h = self.cascade.get("harm_low", -1.0)
        lo_a = self.cascade.get("attack_low", -1.0)
        if exact:
            need = np.ones(len(wins), dtype=bool)
        else:
            # Tier 1 settles only a short text's one window: in a long window, a single request buried in benign
            # text is diluted in the window's n-gram and static features (a nerve-agent request inside 126 tokens
            # of gardening tips scores 0.05 in tier 1 and 0.97 in the exact tier), and the short last window of a
            # long text is mostly the end of that text (a request appended to 3,000 tokens of benign text: 0.08 in
            # tier 1, 0.93 exact), so every window of a text with more than one reaches the encoder.
            alone = np.bincount(owner, minlength=n)[owner] == 1
            short = np.array([len(w) <= CASCADE_MAX_TOKENS for w in wins], dtype=bool) & alone
            need = ~(short & (h1 < lo_h) & (a1 < lo_a))
        if need.any():
            idx = np.flatnonzero(need)
            if self.attack_span is not None:
                emb, spans = self.encoder.embed_spans([wins[i] for i in idx], self.span["span_tokens"],
                                                      self.span["span_stride"])
                exact_attack = span_scores(self.attack_span, emb, spans)
            else:
                emb = self.encoder.embed([wins[i] for i in idx])
                exact_attack = self.attack(emb)  # type: ignore[misc]  # set whenever there is no span head
            harm_w[idx] = self.harm(emb)
            # The attack score may blend the exact head with the n-gram tier (the manifest's weight): builds whose
            # attack head was trained with the encoder took benign persona wrappers for attacks, and the n-gram tier
            # keys on the rule-breaking wording. Builds with the refitted head use the exact head alone (weight 0).
            attack_w[idx] = (1.0 - self.attack_blend) * exact_attack + self.attack_blend * a1[idx]
            cats_w[idx] = self.cats(emb)
        own = np.asarray(owner)
        harm = np.zeros(n, dtype=np.float32)
        attack = np.zeros(n, dtype=np.float32)
        cats = np.zeros((n, 14), dtype=np.float32)
        np.maximum.at(harm, own, harm_w)
        np.maximum.at(attack, own, attack_w)
        # categories: from the most harmful window of each text
        best = {}
        for j, o in enumerate(owner):
            if o not in best or harm_w[j] > harm_w[best[o]]:
                best[o] = j
        for o, j in best.items():
            cats[o] = cats_w[j]
        return PromptScores(harm=harm, attack=attack, categories=cats, windows=np.bincount(own, minlength=n))

    # -- responses ---------------------------------------------------------------------------------
    def tier1_responses(self, seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray] | None:
        """Tier-1 response-harm and refusal scores of pair windows, or None if the model has no such tier."""
        if "response" not in self.t1 or "refusal" not in self.t1:
            return None
        arrs = [np.asarray(q, dtype=np.int64) for q in seqs]
        feats = [hashed_features(a) for a in arrs]
        dense = self.static(arrs) if self.static is not None else None
        return _sigmoid(self.t1["response"].logits(feats, dense)), _sigmoid(self.t1["refusal"].logits(feats, dense))

    def score_responses(self, prompts: Sequence[str], responses: Sequence[str], exact: bool = False) -> ResponseScores:
        n = len(responses)
        seqs, own = pair_windows(self.encoder, prompts, responses)
        harm_w = np.zeros(len(seqs), dtype=np.float32)
        refusal_w = np.zeros(len(seqs), dtype=np.float32)
        cats_w = np.zeros((len(seqs), 14), dtype=np.float32)
        t1 = None if exact else self.tier1_responses(seqs)
        if t1 is None:
            need = np.ones(len(seqs), dtype=bool)
        else:
            # Settle a window only when it is clearly neither harmful nor a refusal, and, as for prompts, only when
            # its response part is short: one harmful passage inside a long benign reply is diluted in the window's
            # tier-1 features (held-out harmful replies buried in benign answers: tier 1 settled 32 of 620 that the
            # encoder flags). The first [SEP] ends the prompt context; a literal "[SEP]" in the prompt can only make
            # the part look longer, which sends the window to the encoder.
            alone = np.bincount(own, minlength=n)[own] == 1  # as for prompts: a long reply's last window too
            short = np.array([len(q) - q.index(SEP) - 2 <= CASCADE_MAX_TOKENS for q in seqs], dtype=bool) & alone
            clear = (t1[0] < self.cascade.get("response_low", -1.0)) & (t1[1] < self.cascade.get("refusal_low", -1.0))
            need = ~(short & clear)
            harm_w[:], refusal_w[:] = t1
        if need.any():
            idx = np.flatnonzero(need)
            emb = self.encoder.embed_full([seqs[i] for i in idx])
            harm_w[idx] = self.response(emb)
            refusal_w[idx] = self.refusal(emb)
            cats_w[idx] = self.cats(emb)
        o = np.asarray(own)
        harm = np.zeros(n, dtype=np.float32)
        np.maximum.at(harm, o, harm_w)
        # A reply refuses when its opening window refuses (later windows are usually the alternative offered).
        first = np.searchsorted(o, np.arange(n))
        refusal = refusal_w[first]
        best = first.copy()
        for j, i in enumerate(own):
            if harm_w[j] > harm_w[best[i]]:
                best[i] = j
        cats = cats_w[best]
        return ResponseScores(harm=harm, refusal=refusal, categories=cats, windows=np.bincount(o, minlength=n))
