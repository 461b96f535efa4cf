"""A simulated prompt-evolution world whose true prompt quality is known, for tests and benchmarks.

Hidden useful rules ("filter cells by mitochondrial fraction", …) each fix a
failure mode; every task needs a few of them. A trial's graders pass with high
probability when the prompt states the rule a grader checks, and rarely when
it does not; every word beyond a comfortable length dilutes all of them.
Training tasks also carry decoy graders that a dataset-specific instruction
fixes: such instructions raise training scores and nothing else. The simulated
reflection model is a real `ChatModel`: it parses the reflection request the
strategies send (current prompt between `<prompt>` tags, failed graders in the
evidence, rewrites that already failed, a checker's refusal) and proposes edits
guided by that feedback, with a configurable error rate: wrong fixes, filler,
dropped rules and passages copied from the task objective.

Only the agent trial and the reflection model are simulated; everything else
(strategies, bank, checks, statistics, gepa) is the real code.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any

from cellprompt.evolve.checks import words
from cellprompt.evolve.reflection import CLOSE, OPEN, extract_prompt
from cellprompt.grading.base import GradeResult
from cellprompt.llm.base import ChatReply, Message, ToolSpec, Usage
from cellprompt.records.run import ExecutionRecord, TrialRecord, TrialSpec, Turn


@dataclass(frozen=True)
class Rule:
    id: str
    phrase: str  # what the prompt must say (matched as consecutive words)
    line: str  # how a reflection model writes it into a prompt
    symptom: str  # a failed grader's reasoning when the rule is missing


USEFUL_RULES: tuple[Rule, ...] = (
    Rule(
        "qc_mito",
        "filter cells by mitochondrial fraction",
        "- Filter cells by mitochondrial fraction before anything else "
        "(drop cells with a high share of MT- reads).",
        "low-quality cells with a high share of mitochondrial reads were kept",
    ),
    Rule(
        "qc_genes",
        "remove cells with few detected genes",
        "- Remove cells with few detected genes and genes seen in almost no cells.",
        "near-empty droplets with a handful of detected genes stayed in the data",
    ),
    Rule(
        "doublets",
        "check for doublets before clustering",
        "- Check for doublets before clustering (scrublet or marker co-expression).",
        "a cluster co-expressing markers of two lineages was reported as a cell type",
    ),
    Rule(
        "normalize",
        "normalize library size then log transform",
        "- Normalize library size then log transform; never cluster raw counts.",
        "clustering ran on raw counts, so library size drove the structure",
    ),
    Rule(
        "raw_layer",
        "keep raw counts in a separate layer",
        "- Keep raw counts in a separate layer before transforming; differential tests need them.",
        "the differential test ran on log-normalised values that had been scaled",
    ),
    Rule(
        "hvg",
        "use highly variable genes before PCA",
        "- Use highly variable genes before PCA (about 2000).",
        "PCA was computed on all genes and was dominated by noise",
    ),
    Rule(
        "batch",
        "correct batch effects when samples differ",
        "- Correct batch effects when samples differ (check obs for a batch or sample column first).",
        "clusters split by sample of origin instead of by biology",
    ),
    Rule(
        "neighbors",
        "choose the number of PCs from the variance",
        "- Choose the number of PCs from the variance explained, not a fixed default.",
        "too few principal components merged distinct populations",
    ),
    Rule(
        "markers",
        "validate clusters with known marker genes",
        "- Validate clusters with known marker genes before naming cell types.",
        "cell types were named from cluster numbers without marker evidence",
    ),
    Rule(
        "de_test",
        "use a rank test with multiple testing correction",
        "- For differential expression use a rank test with multiple testing correction "
        "and report adjusted p-values.",
        "unadjusted p-values were reported as significant genes",
    ),
    Rule(
        "answer",
        "write the answer in exactly the requested format",
        "- Write the answer in exactly the requested format and field names, then re-read it.",
        "the answer file used different field names than the ones requested",
    ),
    Rule(
        "verify",
        "print intermediate shapes and sanity checks",
        "- Print intermediate shapes and sanity checks after every step.",
        "a filtering step silently removed every cell of one type and nobody noticed",
    ),
)

DECOY_RULES: tuple[Rule, ...] = (
    Rule(
        "decoy_res",
        "use leiden resolution 0.8 to get eight clusters",
        "- Use Leiden resolution 0.8 to get eight clusters.",
        "expected eight clusters on this dataset",
    ),
    Rule(
        "decoy_gene",
        "report CD79A as the top B cell marker",
        "- Report CD79A as the top B cell marker.",
        "the expected top marker on this dataset was CD79A",
    ),
    Rule(
        "decoy_cut",
        "cut cells above 2500 genes exactly",
        "- Cut cells above 2500 genes exactly.",
        "the expected gene-count threshold on this dataset was 2500",
    ),
    Rule(
        "decoy_n",
        "expect 2638 cells after filtering",
        "- Expect 2638 cells after filtering.",
        "the expected number of cells after filtering on this dataset was 2638",
    ),
)

IRRELEVANT: tuple[str, ...] = tuple(
    f"- {t}"
    for t in (
        "Prefer UMAP with min_dist 0.3 for visualisation.",
        "Save intermediate AnnData objects to /workspace.",
        "Use a colour-blind friendly palette in figures.",
        "Set the random seed to 0 for reproducibility.",
        "Use sparse matrices whenever possible to save memory.",
        "Label every axis of every figure.",
        "Prefer tSNE perplexity 30 when tSNE is needed.",
        "Write helper functions for repeated code.",
        "Report runtimes of long steps.",
        "Use pandas for tabular summaries.",
        "Prefer dotplots over violin plots for markers.",
        "Keep the notebook tidy with one step per cell.",
        "Log the package versions used.",
        "Use float32 to reduce memory use.",
        "Store cluster colours in uns.",
        "Sort genes alphabetically in tables.",
        "Show the first five rows of every table you build.",
        "Round reported numbers to three decimals.",
        "Use descriptive variable names.",
        "Avoid printing whole matrices.",
    )
)

# plausible advice that breaks what a useful rule fixes: rule ids it cancels
HARMFUL: dict[str, tuple[str, ...]] = {
    "- Keep all cells; filtering loses information.": ("qc_mito", "qc_genes"),
    "- Scale the data and run differential tests on the scaled values.": ("raw_layer", "de_test"),
    "- Use all genes for PCA so that nothing is missed.": ("hvg",),
    "- Name clusters by their number; marker checks are optional.": ("markers",),
}

FILLERS: tuple[str, ...] = (
    "- Be careful, rigorous and thorough in every step of the analysis.",
    "- Think step by step and double check your reasoning before you act.",
    "- Always follow best practices of single-cell analysis as they are commonly understood.",
    "- Make sure your analysis is scientifically sound and reproducible.",
)

SEED_PROMPT = """You are a bioinformatics assistant. Analyse the single-cell dataset and answer the question.

## Preprocessing
- Load the data with scanpy.

## Analysis
- Cluster the cells and look at the result.

## Answer
- Write the answer in exactly the requested format and field names, then re-read it.
"""

_OBJECTIVE_TEXT = (
    "peripheral blood mononuclear cells from a healthy donor were profiled with droplet sequencing and the "
    "study asks which populations are present and how they differ in expression across the conditions "
    "sampled in the experiment"
)
_OBJECTIVE_WORDS = _OBJECTIVE_TEXT.split()


def _has(prompt_words: list[str], phrase: str) -> bool:
    target = words(phrase)
    n = len(target)
    return any(prompt_words[i : i + n] == target for i in range(len(prompt_words) - n + 1))


@dataclass(frozen=True)
class SimTask:
    ref: str
    needs: tuple[str, ...]  # useful rule ids
    decoys: tuple[str, ...]  # decoy rule ids (training tasks only)
    objective: str


@dataclass
class SimWorld:
    """Tasks, rules and the scoring law; `quality` is the noise-free truth the benchmark reports."""

    seed: int = 0
    n_train: int = 6
    n_val: int = 6
    n_test: int = 6
    p_hit: float = 0.9
    p_miss: float = 0.15
    comfort_words: int = 200
    dilution: float = 0.35  # relative loss per comfort-length of extra words
    tasks: dict[str, SimTask] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        rule_ids = [r.id for r in USEFUL_RULES]
        decoys = [r.id for r in DECOY_RULES]
        for split, n in (("train", self.n_train), ("val", self.n_val), ("test", self.n_test)):
            for i in range(n):
                needs = tuple(sorted(rng.sample(rule_ids, rng.randint(3, 5))))
                dec = (decoys[i % len(decoys)],) if split == "train" else ()
                start = rng.randint(0, len(_OBJECTIVE_WORDS) - 20)
                objective = (
                    f"Task {split}-{i}: "
                    + " ".join(_OBJECTIVE_WORDS[start : start + 20])
                    + f". Report the result for question {i}."
                )
                ref = f"sim:{split}-{i}"
                self.tasks[ref] = SimTask(ref=ref, needs=needs, decoys=dec, objective=objective)

    def split(self, name: str) -> list[str]:
        return [ref for ref in self.tasks if ref.startswith(f"sim:{name}-")]

    def _dilute(self, prompt: str) -> float:
        extra = max(0, len(words(prompt)) - self.comfort_words)
        return max(0.0, 1.0 - self.dilution * extra / self.comfort_words)

    def pass_probs(self, prompt: str, task_ref: str) -> dict[str, float]:
        task = self.tasks[task_ref]
        pw = words(prompt)
        factor = self._dilute(prompt)
        rules = {r.id: r for r in (*USEFUL_RULES, *DECOY_RULES)}
        cancelled = {rid for line, ids in HARMFUL.items() if _has(pw, line[2:]) for rid in ids}
        return {
            rid: (self.p_hit if _has(pw, rules[rid].phrase) and rid not in cancelled else self.p_miss)
            * factor
            for rid in (*task.needs, *task.decoys)
        }

    def quality(self, prompt: str, task_refs: list[str]) -> float:
        """The expected trial score: the truth a strategy can only estimate."""
        vals = [sum(p.values()) / len(p) for p in (self.pass_probs(prompt, t) for t in task_refs)]
        return sum(vals) / len(vals)


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


class SimEvaluator:
    """An `Evaluator` whose trials are draws from `SimWorld`; a pure function of (prompt, task, replicate)."""

    def __init__(self, world: SimWorld, model: str = "sim:agent") -> None:
        self.world = world
        self.model = model
        self.calls = 0  # trials actually simulated (resume tests count them)

    def task_texts(self, task_ref: str) -> list[str]:
        return [self.world.tasks[task_ref].objective]

    def evaluate(
        self, prompt: str, task_refs: list[str], replicates: int, *, first_replicate: int = 0
    ) -> list[TrialRecord]:
        rules = {r.id: r for r in (*USEFUL_RULES, *DECOY_RULES)}
        out: list[TrialRecord] = []
        pid = hashlib.sha256(prompt.encode()).hexdigest()[:12]
        for ref in task_refs:
            task = self.world.tasks[ref]
            probs = self.world.pass_probs(prompt, ref)
            for rep in range(first_replicate, first_replicate + replicates):
                self.calls += 1
                rng = _rng(self.world.seed, pid, ref, rep)
                grades = []
                for rid, p in probs.items():
                    ok = rng.random() < p
                    grades.append(
                        GradeResult(
                            grader=f"check_{rid}",
                            score=1.0 if ok else 0.0,
                            passed=ok,
                            reasoning="" if ok else rules[rid].symptom,
                        )
                    )
                score = sum(g.score for g in grades) / len(grades)
                tid = f"{ref}-r{rep}-{pid}"
                code = "import scanpy as sc\nadata = sc.read_h5ad('/data/sim.h5ad')\n" + "\n".join(
                    f"# step: {rid}" for rid, g in zip(probs, grades, strict=True) if g.passed
                )
                out.append(
                    TrialRecord(
                        trial_id=tid,
                        status="submitted",
                        first_message=task.objective,
                        grades=grades,
                        score=score,
                        passed=all(g.passed for g in grades),
                        answer={"result": round(score, 2)},
                        usage=Usage(input_tokens=2000, output_tokens=400, cost_usd=0.01),
                        turns=[
                            Turn(
                                index=0,
                                assistant_text="running the analysis",
                                executions=[ExecutionRecord(code=code, outputs=[], final_status="ok")],
                            )
                        ],
                        spec=TrialSpec(
                            trial_id=tid,
                            prompt_id=pid,
                            prompt=prompt,
                            task_id=ref.split(":", 1)[1],
                            task_ref=ref,
                            model=self.model,
                            replicate=rep,
                        ),
                    )
                )
        return out


_FAILED_LINE = re.compile(r"^- check_(\w+) \(score [0-9.]+\): (.*)$", re.M)


class SimReflectionModel:
    """A `ChatModel` that rewrites the prompt it finds in the request, guided by the failed graders there."""

    spec = "sim:reflection"
    provider = "sim"
    supports_tools = False
    supports_images = False

    def __init__(
        self, seed: int = 0, *, error_rate: float = 0.25, copy_rate: float = 0.1, edits: int = 2
    ) -> None:
        self.rng = random.Random(seed)
        self.error_rate = error_rate
        self.copy_rate = copy_rate
        self.edits = edits
        self.calls = 0
        self._by_symptom = {r.symptom: r for r in (*USEFUL_RULES, *DECOY_RULES)}
        self._pool = [*(r.line for r in USEFUL_RULES), *IRRELEVANT, *HARMFUL, *FILLERS]

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[ToolSpec] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_schema: dict[str, Any] | None = None,
    ) -> ChatReply:
        self.calls += 1
        request = next(m.content for m in messages if m.role == "user")
        current = extract_prompt(request, first=True) or ""
        last = messages[-1].content if messages[-1].role == "user" else ""
        if len(messages) > 2 and "cannot be used" in last:
            previous = extract_prompt(messages[-2].content, first=True) or current
            text = self._repair(previous, last, request)
        else:
            text = self._rewrite(current, request)
        return self._reply(
            f"The failures call for clearer general rules.\n{OPEN}\n{text}\n{CLOSE}", max_tokens
        )

    def _reply(self, content: str, max_tokens: int | None) -> ChatReply:
        tokens = int(len(content.split()) * 1.3) + 1
        stop = "end_turn"
        if max_tokens is not None and tokens > max_tokens:
            keep = int(max_tokens / 1.3)
            content = " ".join(content.split(" ")[:keep])
            tokens, stop = max_tokens, "max_tokens"
        return ChatReply(
            message=Message(role="assistant", content=content),
            stop_reason=stop,
            usage=Usage(input_tokens=3000, output_tokens=tokens, cost_usd=0.02),
        )

    def _rewrite(self, current: str, request: str) -> str:
        rng = self.rng
        failed_text = request.split("# Earlier rewrites", 1)
        evidence, failed_before = failed_text[0], (failed_text[1] if len(failed_text) > 1 else "")
        counts: dict[str, int] = {}
        for _grader, symptom in _FAILED_LINE.findall(evidence):
            counts[symptom.strip()] = counts.get(symptom.strip(), 0) + 1
        lines = current.splitlines()
        pw = words(current)
        wanted: list[str] = []
        for symptom, _ in sorted(counts.items(), key=lambda kv: -kv[1]):
            rule = self._by_symptom.get(symptom)
            if rule is None or _has(pw, rule.phrase) or rule.line in failed_before:
                continue
            wanted.append(rule.line)
        if not wanted:  # nothing to go on: a plausible guess, most often irrelevant
            wanted = [rng.choice(self._pool)]
        new_lines = list(lines)
        for line in wanted[: self.edits]:
            if rng.random() < self.error_rate:
                line = rng.choice(self._pool)
            if line not in new_lines:
                new_lines.append(line)
        if rng.random() < self.error_rate / 2:
            removable = [i for i, ln in enumerate(new_lines) if ln.startswith("- ")]
            if removable:
                del new_lines[rng.choice(removable)]
        if rng.random() < self.copy_rate:
            objective = re.search(r"Objective the agent received:\n(.*)", request)
            if objective:
                new_lines.append("- Note: " + objective.group(1).strip())
        return "\n".join(new_lines)

    def _repair(self, text: str, complaint: str, request: str) -> str:
        lines = text.splitlines()
        if "copied" in complaint:
            lines = [ln for ln in lines if not ln.startswith("- Note: ")]
        if "length" in complaint:
            for filler in FILLERS:
                if filler in lines:
                    lines.remove(filler)
            budget = re.search(r"budget of (\d+)", complaint)
            while budget and len(words("\n".join(lines))) > int(budget.group(1)):
                bullets = [i for i, ln in enumerate(lines) if ln.startswith("- ")]
                if not bullets:
                    break
                del lines[bullets[-1]]
        return "\n".join(lines)
