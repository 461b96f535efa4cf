"""The simulated world's catalogue: the rules a good prompt states, and the advice that misleads.

Useful rules each fix one failure mode (a failed grader whose message is the
rule's symptom). Decoy rules are dataset-specific instructions that raise
training scores only. Irrelevant lines, fillers and harmful advice are what a
careless or mistaken reflection model writes instead: harmful lines cancel the
useful rules they contradict.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellprompt.evolve.checks import words


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

OBJECTIVE_TEXT = (
    "peripheral blood mononuclear cells from a healthy donor were profiled with droplet sequencing and the "
    "study asks which populations are present and how they differ in expression across the conditions "
    "sampled in the experiment"
)
OBJECTIVE_WORDS = OBJECTIVE_TEXT.split()


def has_phrase(prompt_words: list[str], phrase: str) -> bool:
    """The phrase as consecutive words of the prompt (case and punctuation ignored)."""
    target = words(phrase)
    n = len(target)
    return any(prompt_words[i : i + n] == target for i in range(len(prompt_words) - n + 1))


ALL_RULES = {r.id: r for r in (*USEFUL_RULES, *DECOY_RULES)}
