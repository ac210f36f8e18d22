from piimg.cli import run

run()
