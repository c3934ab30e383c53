"""カード (cards): PC/SC reader and the virtual My Number / operator card. Never imports Textual."""
