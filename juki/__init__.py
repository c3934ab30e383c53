"""juki: the appliance edge — configuration and the `juki` command line.

Builds on broker/, store/, nodes/ and (only for `juki terminal`) tui/.
"""
