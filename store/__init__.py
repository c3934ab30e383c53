"""記録 (persistence and domain rules): the files the seed describes, and the rules that guard them.

Imports nothing else of ours and opens no network connection.
"""
