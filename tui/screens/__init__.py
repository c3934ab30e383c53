"""統合端末の画面 (terminal screens): one module per screen."""
