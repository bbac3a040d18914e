"""``python -m logit_digits``: train (see :func:`logit_digits.train.main`)."""

from __future__ import annotations

from logit_digits.train import main

raise SystemExit(main())
