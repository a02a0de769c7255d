"""The loop AHCL and symmetric share: settings, one network epoch, and resumable state."""

import numpy as np
import torch

from hashidx.features.cache import FeatureCache
from hashidx.methods.similarity import similarity
from hashidx.methods.training import (
    Checkpointing,
    TrainConfig,
    frozen_network,
    label_targets,
    network_epochs,
    pair_targets,
    resume_point,
    save_state,
)


def test_config_defaults_are_the_authors_and_serialise():
    c = TrainConfig()
    assert (c.iterations, c.epochs, c.batch_size, c.weight_decay, c.gamma, c.lam) == (30, 2, 64, 5e-4, 20.0, 200.0)
    # The rate is left to the method: the authors' 1e-3, except the symmetric method on multi-label data.
    assert c.lr is None and c.resolved("ahcl", multilabel=True).lr == 1e-3
    assert c.to_json()["lr_steps"] == [10, 20] and c.resolved("ahcl", False).to_json()["lr"] == 1e-3


def test_network_epochs_lower_the_loss_towards_fixed_targets(ucmd_features):
    cache = FeatureCache.load(ucmd_features)
    labels, n_classes = cache.dataset.labels, len(cache.dataset.classes)
    config = TrainConfig(bits=16, epochs=1, seed=0)
    net = frozen_network(cache.features, n_classes, config)
    rng = np.random.default_rng(0)
    class_codes = np.where(rng.normal(size=(n_classes, 16)) >= 0, 1, -1).astype(np.float64)
    targets = pair_targets(class_codes[labels], similarity(labels, labels, n_classes))
    everyone = np.arange(len(labels))
    losses = [network_epochs(net, everyone, label_targets(labels), targets, config, rng)[1]["loss"] for _ in range(4)]
    assert losses[-1] < losses[0]


def test_saved_state_resumes_the_same_optimiser_and_rng(ucmd_features, tmp_path):
    cache = FeatureCache.load(ucmd_features)
    config = TrainConfig(bits=16, seed=0)
    net = frozen_network(cache.features, len(cache.dataset.classes), config)
    rng = np.random.default_rng(7)
    rng.random(3)
    ck = Checkpointing(tmp_path / "resume.pt", "fingerprint", resume=True)
    save_state(ck, 4, net.module, net.opt, rng, [{"iteration": 4}], {"v": np.ones((3, 2), np.int8)})
    fresh = frozen_network(cache.features, len(cache.dataset.classes), config)
    rng2 = np.random.default_rng(0)
    start, log, saved = resume_point(ck, fresh.module, fresh.opt, fresh.sched, rng2)
    assert start == 4 and log == [{"iteration": 4}] and (saved["v"] == 1).all()
    assert rng2.random() == rng.random()
    for a, b in zip(fresh.module.state_dict().values(), net.module.state_dict().values()):
        assert torch.equal(a, b)
