"""The ``kappa`` command: the empirical robustness coefficient of an aggregator (see
:mod:`p2probust.robustness`)."""

from __future__ import annotations

import click


def register(main: click.Group, user_errors) -> None:
    """Add ``kappa`` to the ``p2probust`` group."""

    @main.command()
    @click.option("--rule", default="trimmed-mean", show_default=True,
                  help="aggregator or chain of pre-aggregators and an aggregator (e.g. nnm+median)")
    @click.option("--m", "m", type=int, default=15, show_default=True,
                  help="number of input vectors m of one aggregation (honest and adversarial)")
    @click.option("--f", "f", type=int, default=5, show_default=True, help="number of adversarial vectors (the tolerance)")
    @click.option("--d", "d", type=int, default=10, show_default=True, help="dimension")
    @click.option("--trials", type=int, default=20, show_default=True, help="random input sets per scenario")
    @click.option("--seed", type=int, default=0, show_default=True, help="seed of the inputs and of sampled subsets")
    @user_errors
    def kappa(rule: str, m: int, f: int, d: int, trials: int, seed: int) -> None:
        """Measure the empirical robustness coefficient κ of an aggregator on random inputs.

        κ is the largest ‖F(x) − mean_G‖² / spread_G over subsets G of m − f inputs, on N(0, I) honest
        vectors with f adversarial ones among m (far outliers, ALIE-like, a shift); see p2probust.robustness.
        """
        from .gossip.registry import make_rule
        from .robustness import KAPPA_BOUND_SOURCE, kappa_table

        agg = getattr(make_rule(rule), "aggregator", None)
        if agg is None:
            raise ValueError(f"rule {rule!r} is a gossip rule, not an aggregator; kappa needs an aggregator or a chain such as nnm+median")
        rows = kappa_table(agg, rule, m=m, f=f, d=d, trials=trials, seed=seed)
        click.echo(f"empirical kappa of {agg!r}: m = {m}, f = {f}, d = {d}, {trials} trials, seed {seed}")
        click.echo(f"{'scenario':<10} {'mean':>10} {'max':>10} {'bound':>10}")
        for row in rows:
            bound = "-" if row["bound"] is None else f"{row['bound']:.4g}"
            click.echo(f"{row['scenario']:<10} {row['mean']:>10.4g} {row['max']:>10.4g} {bound:>10}")
        if rows and rows[0]["bound"] is not None:
            click.echo(f"bound: {KAPPA_BOUND_SOURCE}")
