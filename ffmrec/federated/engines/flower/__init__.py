"""ffmrec on Flower (flwr 1.41, Message API).

* :mod:`~ffmrec.federated.engines.flower.apps`: the ``ServerApp`` (runs ffmrec's driver on a Flower ``Grid``) and the
  ``ClientApp`` (a SuperNode's users: cohort or per-user messages).
* :mod:`~ffmrec.federated.engines.flower.node`: ``NodeRuntime``, a SuperNode's device side (its partition's task, the
  vectorised cohort, its personal state on disk).
* :mod:`~ffmrec.federated.engines.flower.engine`: ``FlowerEngine``, the driver's engine on a Grid, and the run config.
* :mod:`~ffmrec.federated.engines.flower.executor`: ``FlowerGridExecutor``, message delivery per node with timeouts.
* :mod:`~ffmrec.federated.engines.flower.records`: the wire format.
* :mod:`~ffmrec.federated.engines.flower.simulation`: ``run_flower_simulation`` (Flower's simulation engine, Ray).
* :mod:`~ffmrec.federated.engines.flower.ray_reaper`: no Ray process of a simulation outlives the program that
  started it, even one killed with SIGKILL.
* :mod:`~ffmrec.federated.engines.flower.deploy`: ``DeploymentCluster`` (a real SuperLink + SuperNodes with TLS and
  SuperNode authentication) and the how-to for running the deployment engine by hand.

Nothing is imported here: ``flwr-clientapp`` imports the apps once per message, so they stay light.
"""
