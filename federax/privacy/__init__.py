"""`fx.privacy`: differential privacy accounting on `dp-accounting` (the `privacy` extra).

    accountant = fx.privacy.PrivacyAccountant.from_factory(aggregator, sampler, delta=1e-5)
    fx.program.run_training_process(process, select, 100, privacy_accountant=accountant)
    fx.privacy.calibrate(2.0, 1e-5, rounds=100, population=3383, noise_to_clients_ratio=0.01)

`dp_accounting` is imported when an accountant is built, so `import federax` works without it.
"""

from federax.privacy.accountant import PrivacyAccountant as PrivacyAccountant
from federax.privacy.accountant import default_delta as default_delta
from federax.privacy.calibration import Calibration as Calibration
from federax.privacy.calibration import calibrate as calibrate
from federax.privacy.events import Sampling as Sampling
from federax.privacy.events import dp_event_of as dp_event_of

__all__ = ["Calibration", "PrivacyAccountant", "Sampling", "calibrate", "default_delta",
           "dp_event_of"]
