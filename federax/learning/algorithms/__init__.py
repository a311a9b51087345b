"""Federated learning algorithms as `LearningProcess`es (TFF's `tff.learning.algorithms`)."""

from federax.learning.algorithms.fed_avg import build_unweighted_fed_avg as build_unweighted_fed_avg
from federax.learning.algorithms.fed_avg import build_weighted_fed_avg as build_weighted_fed_avg
from federax.learning.algorithms.fed_avg import (
    build_weighted_fed_avg_with_optimizer_schedule as
    build_weighted_fed_avg_with_optimizer_schedule)
from federax.learning.algorithms.fed_eval import build_fed_eval as build_fed_eval
from federax.learning.algorithms.fed_prox import (
    build_unweighted_fed_prox as build_unweighted_fed_prox)
from federax.learning.algorithms.fed_prox import build_weighted_fed_prox as build_weighted_fed_prox
from federax.learning.algorithms.fed_recon import build_fed_recon as build_fed_recon
from federax.learning.algorithms.fed_recon_eval import (
    build_fed_recon_eval as build_fed_recon_eval)
from federax.learning.algorithms.fed_sgd import build_fed_sgd as build_fed_sgd
from federax.learning.algorithms.fedper import build_fedper as build_fedper
from federax.learning.algorithms.kmeans_clustering import build_fed_kmeans as build_fed_kmeans
from federax.learning.algorithms.mime_lite import (
    build_unweighted_mime_lite as build_unweighted_mime_lite)
from federax.learning.algorithms.mime_lite import (
    build_weighted_mime_lite as build_weighted_mime_lite)
from federax.learning.algorithms.ditto import build_ditto as build_ditto
from federax.learning.algorithms.scaffold import build_scaffold as build_scaffold
from federax.learning.personalization_eval import (  # TFF's path too.
    build_personalization_eval_computation as build_personalization_eval_computation)

__all__ = [
    "build_weighted_fed_avg", "build_unweighted_fed_avg",
    "build_weighted_fed_avg_with_optimizer_schedule", "build_fed_eval", "build_weighted_fed_prox",
    "build_unweighted_fed_prox", "build_fed_sgd", "build_weighted_mime_lite",
    "build_unweighted_mime_lite", "build_fed_recon", "build_fed_recon_eval", "build_scaffold",
    "build_ditto", "build_personalization_eval_computation", "build_fed_kmeans",
    "build_fedper",
]
