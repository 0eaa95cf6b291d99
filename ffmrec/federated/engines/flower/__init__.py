"""ffmrec on Flower (flwr 1.41, Message API).

* :mod:`~ffmrec.federated.engines.flower.apps`: the ``ServerApp`` (runs ffmrec's driver on a Flower ``Grid``) and the
  ``ClientApp`` (one user's update/evaluation; personal state kept in the SuperNode's ``Context``).
* :mod:`~ffmrec.federated.engines.flower.executor`: ``FlowerGridExecutor``, the driver's ``ClientExecutor`` on a ``Grid``.
* :mod:`~ffmrec.federated.engines.flower.simulation`: ``run_flower_simulation`` (Flower's simulation engine, Ray).
* :mod:`~ffmrec.federated.engines.flower.deploy`: ``DeploymentCluster`` (a real SuperLink + SuperNodes with TLS and
  SuperNode authentication) and the how-to for running the deployment engine by hand.
* :mod:`~ffmrec.federated.engines.flower.toy`: a 10-parameter linear task and a FedAvg stand-in driver for smoke tests.

Nothing is imported here: ``flwr-clientapp`` imports the apps once per message, so they stay light.
"""
