"""Client tasks: what one client does (see :mod:`ffmrec.tasks.base` for the seams every engine calls).

- :mod:`~ffmrec.tasks.sequential`: next-item prediction (FedSASRec);
- :mod:`~ffmrec.tasks.contrastive`: CL4SRec's augmented views and InfoNCE term;
- :mod:`~ffmrec.tasks.lumos`: LUMOS, foundation-model views of the history and a tri-view InfoNCE term;
- :mod:`~ffmrec.tasks.lm`: a causal language model with LoRA adapters, trained by a stateful trainer;
- :mod:`~ffmrec.tasks.linear`: per-user linear regression, the trivial client of speed benchmarks and smoke tests.
"""
