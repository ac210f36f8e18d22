"""piimg completion SHELL."""

from __future__ import annotations

import click

from piimg.cli.common import echo

#: click's shell_complete machinery answers when this variable is set (``piimg`` -> ``_PIIMG_COMPLETE``).
COMPLETE_VAR = "_PIIMG_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    It completes commands, options, node names (--node, --nodes) and, for
    flash, the disks piimg would write. Load it from your shell's start-up
    file:

    \\b
      bash   echo 'eval "$(piimg completion bash)"' >> ~/.bashrc
      zsh    echo 'eval "$(piimg completion zsh)"' >> ~/.zshrc
      fish   piimg completion fish > ~/.config/fish/completions/piimg.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # click ships bash, zsh and fish: the Choice above
    root = click.get_current_context().find_root().command
    echo(cls(root, {}, "piimg", COMPLETE_VAR).source().rstrip("\n"))


COMMANDS = [completion]
