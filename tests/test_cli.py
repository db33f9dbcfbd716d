"""The ``intnn`` entry point's process set-up."""

from __future__ import annotations

import platform
import sys

from torch_intnn.cli import keep_freed_memory


def test_keep_freed_memory_takes_effect_on_glibc():
    """mallopt accepts the three settings wherever glibc is the C library, and nothing is attempted elsewhere."""
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected



def test_the_help_page_lists_every_command(capsys):
    from torch_intnn.cli import main

    for args in ([], ["--help"]):
        main(args)
        out = capsys.readouterr().out
        commands = [line.split()[0] for line in out.split("commands:")[1].split("environment:")[0].splitlines()
                    if line.startswith("  ") and not line.startswith("   ")]
        assert commands == ["fit", "validate", "test", "predict", "compare", "bench", "export", "models", "recipes"]


def test_recipes_are_listed_and_found_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    from torch_intnn.cli import main

    monkeypatch.chdir(tmp_path)
    main(["recipes"])
    listed = capsys.readouterr().out
    assert "mnist_pocketnn_dfa " in listed and "PocketNN's MNIST MLP" in listed
    import pytest

    with pytest.raises(SystemExit) as done:  # --print_config exits 0 after printing
        main(["fit", "--config", "mnist_pocketnn_dfa", "--print_config"])
    assert done.value.code == 0 and "class_path: torch_intnn.learning.DFA" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="no recipe file or recipe named 'mnist_nope'"):
        main(["fit", "--config", "mnist_nope"])


def test_test_without_a_checkpoint_is_refused():
    import pytest

    from torch_intnn.cli import main

    with pytest.raises(SystemExit, match="--ckpt_path"):
        main(["test", "--config", "mnist_pocketnn_dfa"])
