"""Checkpoints: plain tensors + JSON config round trip; anything that could run code is refused."""

import pickle

import pytest
import torch

from hashidx.errors import HashidxError
from hashidx.methods.checkpoints import load_checkpoint, save_checkpoint
from hashidx.methods.head import HashHead

CONFIG = {"feature_dim": 12, "bits": 16, "classes": ["a", "b", "c"], "hidden": 8, "dropout": 0.5}


def test_round_trip(tmp_path):
    head = HashHead(12, 16, 3, hidden=8)
    save_checkpoint(tmp_path / "m.pt", head, CONFIG)
    back, config = load_checkpoint(tmp_path / "m.pt")
    assert config == CONFIG
    x = torch.randn(4, 12)
    head.eval()
    assert torch.equal(back(x)[0], head(x)[0])
    u = back(x)[0]
    assert u.shape == (4, 16) and (u.abs() < 1).all()


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"config": CONFIG, "state_dict": {}, "payload": _Exploit()}, path)
    with pytest.raises(HashidxError, match="not a hashidx checkpoint of plain tensors"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out
    with open(tmp_path / "raw.pt", "wb") as fh:
        pickle.dump(_Exploit(), fh)
    with pytest.raises(HashidxError):
        load_checkpoint(tmp_path / "raw.pt")
    assert "pwned" not in capsys.readouterr().out
