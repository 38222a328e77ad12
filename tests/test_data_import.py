"""Real data in, exactly: Fashion-MNIST from the Debian idx files, CIFAR pickles, image folders,
npz arrays -> TFDS datasets read back by tfds.data_source / tfds.builder without TensorFlow."""

import gzip
import os
import pickle

import numpy as np
import pytest

from synth_jax import cli
from synth_jax.data import importer, readers, tfds_source
from synth_jax.errors import UsageError

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION), reason="Debian package dataset-fashion-mnist is not installed"
)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    assert (
        cli.main(["data", "import", "fashion_mnist", "--from", FASHION, "--data_dir", data_dir])
        == 0
    )
    return data_dir


@needs_fashion
def test_fashion_mnist_reads_back_exactly(fashion_dir):
    import tensorflow_datasets as tfds

    local = readers.read_local(FASHION)
    builder = tfds.builder("fashion_mnist", data_dir=fashion_dir)
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == {
        "train": 60000,
        "test": 10000,
    }
    assert builder.info.features["label"].names[0] == "T-shirt/top"  # TFDS's own features
    sources = tfds.data_source("fashion_mnist", data_dir=fashion_dir)
    test = sources["test"].__getitems__(list(range(10000)))
    np.testing.assert_array_equal(np.stack([r["image"] for r in test]), local.splits["test"].images)
    np.testing.assert_array_equal([r["label"] for r in test], local.splits["test"].labels)
    opened = tfds_source.open_split("fashion_mnist", "train", fashion_dir)
    np.testing.assert_array_equal(tfds_source.read_labels(opened), local.splits["train"].labels)
    some = np.random.default_rng(0).choice(60000, 500, replace=False)
    got = np.stack([r["image"] for r in sources["train"].__getitems__(some.tolist())])
    np.testing.assert_array_equal(got, local.splits["train"].images[some])


@needs_fashion
def test_second_import_needs_overwrite_and_cli_says_so(fashion_dir, capsys):
    code = cli.main(
        ["data", "import", "fashion_mnist", "--from", FASHION, "--data_dir", fashion_dir]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--overwrite" in err and len(err.splitlines()) == 1


def test_truncated_idx_file_is_refused_and_nothing_is_left(tmp_path):
    src = tmp_path / "mnist_copy"
    src.mkdir()
    images = np.zeros((5, 28, 28), np.uint8)
    header = bytes([0, 0, 8, 3]) + np.array([5, 28, 28], ">u4").tobytes()
    with gzip.open(src / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes()[:-10])  # truncated download
    with pytest.raises(UsageError, match="truncated"):
        readers.read_idx(str(src / "train-images-idx3-ubyte.gz"))
    for name in ("t10k-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (src / name).write_bytes(b"")
    data_dir = tmp_path / "tfds"
    with pytest.raises(UsageError):
        importer.import_dataset("my_mnist", str(src), str(data_dir))
    assert not data_dir.exists() or os.listdir(data_dir) == []


def _write_cifar10(root, per_batch: int, rng):
    root.mkdir()
    names = [f"class{i}" for i in range(10)]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names]}, f)
    images, labels = {}, {}
    for split, files in (
        ("train", [f"data_batch_{i}" for i in range(1, 6)]),
        ("test", ["test_batch"]),
    ):
        chunks_x, chunks_y = [], []
        for name in files:
            x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            y = rng.integers(0, 10, per_batch).tolist()
            with open(root / name, "wb") as f:
                pickle.dump({b"data": x, b"labels": y}, f)
            chunks_x.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            chunks_y.append(y)
        images[split], labels[split] = np.concatenate(chunks_x), np.concatenate(chunks_y)
    return images, labels


def test_cifar_pickles_round_trip_and_partial_cifar10_is_refused(tmp_path):
    import tensorflow_datasets as tfds

    images, labels = _write_cifar10(tmp_path / "cifar-10-batches-py", 4, np.random.default_rng(1))
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(UsageError, match="partial"):  # 20 images are not CIFAR-10's 50,000
        importer.import_dataset("cifar10", str(tmp_path / "cifar-10-batches-py"), data_dir)
    importer.import_dataset("tiny_cifar", str(tmp_path / "cifar-10-batches-py"), data_dir)
    source = tfds.data_source("tiny_cifar", data_dir=data_dir)
    for split in ("train", "test"):
        records = source[split].__getitems__(list(range(len(labels[split]))))
        np.testing.assert_array_equal(np.stack([r["image"] for r in records]), images[split])
        np.testing.assert_array_equal([r["label"] for r in records], labels[split])
    assert tfds.builder("tiny_cifar", data_dir=data_dir).info.features["label"].names[3] == "class3"


def test_image_folder_and_npz(tmp_path):
    from PIL import Image

    from synth_jax.data import pipeline

    rng = np.random.default_rng(2)
    root = tmp_path / "folder"
    expected = {}
    for split in ("train", "test"):
        for c, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                size = (20 + i, 24)
                if c == 0:  # grayscale PNGs become RGB
                    pixels = rng.integers(0, 256, size[::-1], dtype=np.uint8)
                    Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
                    expected[(split, cls, i)] = np.repeat(pixels[..., None], 3, -1)
                else:
                    pixels = rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
                    expected[(split, cls, i)] = pixels
    data_dir = str(tmp_path / "tfds")
    importer.import_dataset("pets_folder", str(root), data_dir)
    opened = tfds_source.open_split("pets_folder", "train", data_dir)
    assert opened.class_names == ["cat", "dog"] and opened.image_shape == (None, None, 3)
    for j in range(6):
        record = opened.source[j]
        cls = ["cat", "dog"][record["label"]]
        np.testing.assert_array_equal(record["image"], expected[("train", cls, j % 3)])
    with pytest.raises(UsageError, match="decode_size"):  # differing sizes cannot be stacked
        pipeline.make_source(
            pipeline.tfds_config(name="pets_folder", data_dir=data_dir), "train", 2, 0, True
        )
    config = pipeline.tfds_config(name="pets_folder", data_dir=data_dir, decode_size=16)
    batch = next(pipeline.make_source(config, "train", 2, 0, True))
    assert batch["image"].shape == (2, 16, 16, 3)

    x = rng.integers(0, 256, (7, 8, 8), dtype=np.uint8)
    y = np.arange(7) % 3
    np.savez(
        tmp_path / "arrays.npz",
        train_images=x,
        train_labels=y,
        test_images=x[:2],
        test_labels=y[:2],
    )
    importer.import_dataset("tiny_npz", str(tmp_path / "arrays.npz"), data_dir)
    opened = tfds_source.open_split("tiny_npz", "train", data_dir)
    got = np.stack([opened.source[i]["image"][..., 0] for i in range(7)])
    np.testing.assert_array_equal(got, x)
    np.savez(tmp_path / "bad.npz", train_images=x, train_labels=y[:5])
    with pytest.raises(UsageError, match="one label per image"):
        importer.import_dataset("bad_npz", str(tmp_path / "bad.npz"), data_dir)


def test_missing_dataset_error_says_how_to_import(tmp_path, capsys):
    from synth_jax.data import pipeline

    config = pipeline.tfds_config(name="cifar10", data_dir=str(tmp_path))
    with pytest.raises(UsageError) as info:
        pipeline.make_source(config, "train", 8, 0, True)
    message = str(info.value)
    assert f"synth-jax data import cifar10 --from PATH --data_dir {tmp_path}" in message
    assert "cifar-10-batches-py" in message


def test_cifar100_pickles_keep_fine_and_coarse_labels(tmp_path):
    import tensorflow_datasets as tfds

    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(4)
    with open(root / "meta", "wb") as f:
        pickle.dump(
            {
                b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
            },
            f,
        )
    expected = {}
    for split, n in (("train", 6), ("test", 3)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine, coarse = rng.integers(0, 100, n).tolist(), rng.integers(0, 20, n).tolist()
        with open(root / split, "wb") as f:
            pickle.dump({b"data": x, b"fine_labels": fine, b"coarse_labels": coarse}, f)
        expected[split] = (x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), fine, coarse)
    data_dir = str(tmp_path / "tfds")
    importer.import_dataset("tiny_cifar100", str(root), data_dir)
    source = tfds.data_source("tiny_cifar100", data_dir=data_dir)
    for split, (images, fine, coarse) in expected.items():
        records = source[split].__getitems__(list(range(len(fine))))
        np.testing.assert_array_equal(np.stack([r["image"] for r in records]), images)
        assert [r["label"] for r in records] == fine
        assert [r["coarse_label"] for r in records] == coarse


def _folder_of_every_kind(root):
    """train/ and test/ with a 16-bit PNG ramp, a .webp, a .bmp, an image nested two folders
    down, a text file and a hidden file; returns the expected RGB pixels by (split, id)."""
    from PIL import Image

    ramp = (np.arange(256, dtype=np.uint16) * 256).reshape(16, 16)  # 0 .. 65280: 256 levels
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    expected = {}
    for split in ("train", "test"):
        (root / split / "ramp").mkdir(parents=True)
        (root / split / "other" / "a" / "b").mkdir(parents=True)
        Image.fromarray(ramp).save(root / split / "ramp" / "r.png")  # mode I;16
        expected[(split, "ramp/r.png")] = np.repeat((ramp >> 8).astype(np.uint8)[..., None], 3, -1)
        Image.fromarray(rgb).save(root / split / "other" / "x.webp", lossless=True)
        Image.fromarray(rgb).save(root / split / "other" / "y.bmp")
        Image.fromarray(rgb).save(root / split / "other" / "a" / "b" / "z.png")
        for name in ("other/x.webp", "other/y.bmp", "other/a/b/z.png"):
            expected[(split, name)] = rgb
        (root / split / "other" / "notes.txt").write_text("not an image\n")
        (root / split / "other" / ".DS_Store").write_bytes(b"\0")
    return expected


def test_an_image_folder_keeps_every_level_format_and_nested_image(tmp_path, capsys):
    expected = _folder_of_every_kind(tmp_path / "folder")
    data_dir = str(tmp_path / "tfds")
    argv = ["data", "import", "kinds", "--from", str(tmp_path / "folder"), "--data_dir", data_dir]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "imported 8 images, skipped 4 (hidden file: 2, not an image (.txt): 2)" in out, out
    for split in ("train", "test"):
        opened = tfds_source.open_split("kinds", split, data_dir)
        assert opened.class_names == ["other", "ramp"]
        got = {}
        for i in range(4):
            record = opened.source[i]
            got[record["id"].decode() if isinstance(record["id"], bytes) else record["id"]] = (
                record["image"]
            )
        assert sorted(got) == sorted(name for s, name in expected if s == split)
        for name, image in got.items():
            np.testing.assert_array_equal(image, expected[(split, name)], err_msg=name)
        assert len(np.unique(got["ramp/r.png"])) == 256  # every level of the 16-bit ramp


def test_an_empty_class_folder_is_refused_in_one_line(tmp_path, capsys):
    _folder_of_every_kind(tmp_path / "folder")
    (tmp_path / "folder" / "test" / "empty").mkdir()
    argv = ["data", "import", "e", "--from", str(tmp_path / "folder"), "--data_dir", "tfds_x"]
    assert cli.main([*argv[:-1], str(tmp_path / "tfds")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test/empty: a class folder without images" in err[0], err
    assert not os.path.exists(tmp_path / "tfds")


def test_a_full_disk_during_import_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import errno

    real = importer._examples

    def full_disk(*args):  # the disk fills up after the first example is written
        for i, item in enumerate(real(*args)):
            if i == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            yield item

    monkeypatch.setattr(importer, "_examples", full_disk)
    np.savez(
        tmp_path / "a.npz",
        train_images=np.zeros((4, 8, 8), np.uint8),
        train_labels=np.arange(4) % 2,
    )
    data_dir = tmp_path / "tfds"
    argv = [
        "data",
        "import",
        "full",
        "--from",
        str(tmp_path / "a.npz"),
        "--data_dir",
        str(data_dir),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "--data_dir" in err[0], err
    assert not data_dir.exists() or os.listdir(data_dir) == []
