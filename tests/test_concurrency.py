"""Several annotators at once, each in its own process: nothing lost, the chain stays linear."""

import multiprocessing

from stet import Archive

WORKERS = 4
EACH = 15
TEXT = "Everyone has the right to life, liberty and security of person. " * 4


def annotator(db_path, name, barrier, errors):
    try:
        with Archive(db_path) as archive:
            barrier.wait(timeout=60)  # everyone starts writing at the same moment
            made = []
            for n in range(EACH):
                layer = "shared" if n % 2 else f"layer-{name}"
                made.append(archive.annotate(1, layer=layer, start=n, end=n + 10, by=name,
                                             body=f"{name} {n}"))
                if n % 3 == 0:
                    archive.revise(made[-1]["id"], body=f"{name} {n} revised", by=name)
    except BaseException as exc:  # reported to the parent, which fails the test
        errors.put(f"{name}: {exc!r}")


def test_four_annotators_at_once_lose_nothing(tmp_path):
    (tmp_path / "doc.txt").write_text(TEXT, encoding="utf-8")
    db_path = str(tmp_path / "archive.db")
    with Archive(db_path) as archive:
        archive.ingest([tmp_path / "doc.txt"], by="archivist")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    errors = context.Queue()
    names = [f"annotator{i}" for i in range(WORKERS)]
    processes = [context.Process(target=annotator, args=(db_path, name, barrier, errors))
                 for name in names]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert [p.exitcode for p in processes] == [0] * WORKERS

    with Archive(db_path) as archive:
        assert archive.verify() == []  # includes the whole chain, linked event by event
        current = list(archive.annotations())
        assert len(current) == WORKERS * EACH
        for name in names:
            mine = sorted((a for a in current if a["creator"] == name), key=lambda a: a["start"])
            assert [a["body"] for a in mine] == [
                f"{name} {n}" + (" revised" if n % 3 == 0 else "") for n in range(EACH)]
        revisions = WORKERS * (EACH + len(range(0, EACH, 3)))
        assert archive.counts()["annotation revisions"] == revisions
        events = list(archive.log())
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        actions = [e["action"] for e in events]
        assert actions.count("annotate") == WORKERS * EACH
        assert actions.count("revise") == revisions - WORKERS * EACH
        assert sorted(layer["name"] for layer in archive.layers()) == sorted(
            ["shared"] + [f"layer-{name}" for name in names])
