from r1lab.cli import app

app()
