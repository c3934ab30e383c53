"""統合端末 (integrated terminal): the Textual app. tui/card holds the headless card reader."""
