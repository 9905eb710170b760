"""The customers the closed-loop example's traffic comes from, before and after the world changes.

Stdlib only (the driver runs anywhere Python 3 does). `draw(rng, shifted)` returns one customer's features and
whether they churned. Before the shift, customers are drawn as examples/data/make_churn.py draws the training
data. After it, two features move (customers are 18 years older and pay 25 more a month) and so does the
link between age and churn (older customers now leave more often): a covariate shift that drift detection
sees, plus a concept change that makes the champion wrong and retraining worth it.
"""

import math

PLANS = ["basic", "pro", "enterprise"]
FEATURES = ["age", "tenure_months", "monthly_charges", "plan", "support_calls"]


def _poisson(rng, lam):
    # Knuth's method: fine for the small rates used here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def draw(rng, shifted=False):
    plan = rng.choices(PLANS, weights=[0.5, 0.35, 0.15])[0]
    age = min(max(round(rng.gauss(42, 13)), 18), 85)
    tenure = min(max(round(rng.expovariate(1 / 22)), 0), 72)
    base = {"basic": 30.0, "pro": 65.0}.get(plan, 105.0)
    charges = min(max(round(base + rng.gauss(0, 9) + 0.08 * tenure, 2), 15), 150)
    calls = float(_poisson(rng, 0.6 + 1.2 * (charges > base + 8) + 0.3 * (plan == "basic")))
    age_effect = -0.03 * (age - 42)
    if shifted:
        age = min(age + 18, 95)
        charges = round(charges + 25, 2)
        age_effect = 0.06 * (age - 60)
    z = (-0.9 - 0.1 * tenure + 0.045 * (charges - 60) + 0.8 * calls + age_effect
         + {"basic": 0.5, "pro": 0.0}.get(plan, -0.8))
    churned = int(rng.random() < 1 / (1 + math.exp(-z)))
    row = {"age": float(age), "tenure_months": float(tenure), "monthly_charges": charges, "plan": plan,
           "support_calls": calls}
    return row, churned
