"""Evidence about an answer, so the Critic and the Executor work from facts rather than opinions.

One module per job:

- :mod:`.markdown` — the answer's fenced blocks by language, the program it offers;
- :mod:`.ask` — what the task asks for (code, a result, prose), decided once, and the form
  checks that follow from it;
- :mod:`.requirements` — the requirements a task states about its answer's form (counts,
  case, words, start and end, format), read from its words and checked by small deterministic
  functions;
- :mod:`.examples` — the input/output examples a task states, as calls;
- :mod:`.static` — syntax and undefined names, running nothing;
- :mod:`.harness` and :mod:`.execution` — the answer's code run case by case in the
  :mod:`~ai_stack.sandbox`;
- :mod:`.collector` — all of it for one answer.

Each fact is a :class:`~ai_stack.types.Check`; ``passed`` is True or False for what can be
decided, None for an output shown for judgement.
"""

from ai_stack.evidence.ask import (
    dropped_code,
    form_checks,
    planned,
    printed_by,
    read,
    requirement_checks,
    result_agrees,
    result_form,
    signature,
)
from ai_stack.evidence.collector import EvidenceCollector
from ai_stack.evidence.examples import Example, examples
from ai_stack.evidence.execution import run_python
from ai_stack.evidence.markdown import CodeBlock, code_blocks, program_blocks, python_source
from ai_stack.evidence.requirements import check_requirement, stated
from ai_stack.evidence.static import static_checks
from ai_stack.types import Ask, Check, Evidence

__all__ = [
    "Ask",
    "Check",
    "CodeBlock",
    "Evidence",
    "EvidenceCollector",
    "Example",
    "check_requirement",
    "code_blocks",
    "dropped_code",
    "examples",
    "form_checks",
    "planned",
    "printed_by",
    "program_blocks",
    "python_source",
    "read",
    "requirement_checks",
    "result_agrees",
    "result_form",
    "run_python",
    "signature",
    "stated",
    "static_checks",
]
