from tandem.cli.main import cli

cli()
