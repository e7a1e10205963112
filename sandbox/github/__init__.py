"""A GitHub REST API emulator: the branch, contents and pull-request endpoints the bot uses."""
