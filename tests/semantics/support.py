"""Small helpers shared by the semantics tests."""

from __future__ import annotations

from mlspec.diagnostics import Diagnostic
from mlspec.ir.spec import Spec
from mlspec.semantics.check import check_modules
from mlspec.syntax.parse import parse

# A small, clean spec to edit in tests: each test replaces one piece and looks at the result.
BASE = """\
project shop { owner = "ml@example.com" }

entity customer { key = customer_id }

source customers {
  path      = "data/customers.parquet"
  key       = customer_id
  timestamp = signup_date
  schema {
    customer_id int not null unique
    signup_date date not null
    plan        string
  }
}

source orders {
  path      = "data/orders.parquet"
  key       = order_id
  timestamp = ordered_at
  schema {
    order_id    int not null unique
    customer_id int not null
    ordered_at  timestamp not null
    amount      float
    channel     string
  }
}

source churn_labels {
  path      = "data/churn_labels.parquet"
  timestamp = observed_at
  schema {
    customer_id int not null
    observed_at timestamp not null
    churned     bool not null
  }
}

features activity {
  entity     = customer
  from       = orders
  orders_30d = count(order_id, last 30d)
  spend_90d  = sum(amount, last 90d)
}

features profile {
  entity      = customer
  from        = customers
  tenure_days = days_between(signup_date, as_of)
}

label churned {
  entity = customer
  from   = churn_labels
  value  = churned
}

check orders {
  amount >= 0
}

model churn_risk {
  task     = binary
  label    = churned
  features = [activity.*, profile.*]
  split    = by_time(test_from = "2026-04-01")
}

serve churn_api {
  model       = churn_risk
  mode        = realtime
  latency_p99 = 50ms
  replicas    = 2..4
}

monitor churn_risk {
  psi(features) > 0.25 -> alert(oncall)
}

alert oncall { webhook = env("ONCALL_WEBHOOK_URL") }
"""


def edited(*replacements: str, base: str = BASE) -> str:
    """BASE with each (old, new) pair replaced once; fails loudly when `old` is not there."""
    assert len(replacements) % 2 == 0
    text = base
    for old, new in zip(replacements[::2], replacements[1::2], strict=True):
        assert old in text, f"not in the base spec: {old!r}"
        text = text.replace(old, new, 1)
    return text


def check_text(text: str, file: str = "t.mlspec") -> tuple[Spec | None, list[Diagnostic]]:
    """Parse and check one file's text (syntax errors raise MlspecError)."""
    return check_modules([parse(text, file)])


def codes(diagnostics: list[Diagnostic]) -> list[str]:
    return [d.code for d in diagnostics]


def errors(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.is_error]
