import numpy as np
import pytest

from ffmrec.eval.exposure import exposure_rate


def test_exposure_rate_hand_computed():
    # ranks of the target among each user's unseen items; users 2 and 4 interacted with it (not eligible)
    ranks = np.array([1, 10, 3, 11, 200, 7])
    eligible = np.array([True, True, False, True, False, True])
    # eligible ranks 1, 10, 11, 7: three of four are <= 10
    assert exposure_rate(ranks, 10, eligible) == pytest.approx(0.75)
    assert exposure_rate(ranks, 5, eligible) == pytest.approx(0.25)
    assert exposure_rate(ranks, 10) == pytest.approx(4 / 6)


def test_exposure_rate_is_zero_without_eligible_users_and_rejects_bad_input():
    assert exposure_rate(np.array([1, 2]), 10, np.array([False, False])) == 0.0
    with pytest.raises(ValueError, match="1-based"):
        exposure_rate(np.array([0, 2]), 10)
    with pytest.raises(ValueError, match="one entry per user"):
        exposure_rate(np.array([1, 2]), 10, np.array([True]))


def test_sequential_task_reports_exposure_of_its_item_over_users_who_never_saw_it(make_task):
    task = make_task()
    item = 7
    task.exposure_item, task.exposure_k = item, 10
    shared = task.initial_shared()
    clients = np.arange(task.num_clients)
    personal = {k: torch_stack([task.initial_personal(int(c))[k] for c in clients]) for k in task.personal_names}
    columns = task.evaluate("test", shared, personal, clients)
    seen = np.array([item in task.split.sequences[c] for c in clients])
    assert seen.any() and not seen.all()
    assert np.all(columns["exposure_rank"][seen] == 0)
    assert np.all(columns["exposure_rank"][~seen] >= 1)
    metrics = task.summarize(columns)
    expected = np.mean(columns["exposure_rank"][~seen] <= 10)
    assert metrics["ER@10"] == pytest.approx(expected)
    # failed users: eligible and not exposed
    failed = task.failed_columns(2)
    assert set(failed) == {"rank", "exposure_rank"} and np.all(failed["exposure_rank"] > 10)


def torch_stack(rows):
    import torch

    return torch.stack(rows)
