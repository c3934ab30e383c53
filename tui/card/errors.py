"""カードエラー (card errors): the one error tree of tui/card, with operator-facing text.

Every failure a card read can meet — a wrong PIN, a pulled card, pcscd down, a corrupt file —
arrives here as a ``CardError`` carrying a short Japanese ``title`` and ``message`` for the
terminal to show, and a stable ``code`` to log and count. No message ever contains a PIN or a
個人番号. Foreign exceptions (pyscard, sockets) are translated at the seam in pcsc.py, so
callers catch ``CardError`` and nothing else.
"""

from __future__ import annotations

from . import constants as c


class CardError(Exception):
    """Base of every card error; ``title`` and ``message`` are shown to the operator."""

    code = "card_error"
    title = "カードエラー"

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        self.message = message or self.default_message()
        #: Technical detail for logs (status words, pcsc codes); never personal data.
        self.detail = detail
        super().__init__(f"{self.message} ({detail})" if detail else self.message)

    def default_message(self) -> str:
        return "カードの処理中にエラーが発生しました。"


class WrongPin(CardError):
    """VERIFY failed; ``tries_left`` is None when the card keeps no counter (6300)."""

    code = "wrong_pin"
    title = "暗証番号が違います"

    def __init__(self, tries_left: int | None, *, detail: str = "") -> None:
        self.tries_left = tries_left
        super().__init__(detail=detail)

    def default_message(self) -> str:
        if self.tries_left is None:
            return "暗証番号が正しくありません。もう一度入力してください。"
        return (
            f"暗証番号が正しくありません。あと{self.tries_left}回間違えると"
            "暗証番号がロックされます。"
        )


class PinBlocked(CardError):
    """The PIN's retry counter is exhausted (63C0, 6983 or 6984)."""

    code = "pin_blocked"
    title = "暗証番号がロックされています"

    def default_message(self) -> str:
        return (
            "暗証番号の入力誤りが規定回数に達したため、ロックされています。"
            "暗証番号の初期化（再設定）の手続きを案内してください。"
        )


class InvalidPinFormat(CardError):
    """The PIN typed has the wrong shape; refused before the card sees it, costing no try."""

    code = "invalid_pin_format"
    title = "暗証番号の形式が違います"

    def default_message(self) -> str:
        return "暗証番号の桁数または文字種が正しくありません。"


class NoCard(CardError):
    code = "no_card"
    title = "カードがありません"

    def default_message(self) -> str:
        return "カードリーダにカードが置かれていません。カードを置いてください。"


class CardRemoved(CardError):
    code = "card_removed"
    title = "カードが取り外されました"

    def default_message(self) -> str:
        return (
            "読み取り中にカードが取り外されました。カードを置き直して、もう一度実行してください。"
        )


class NotMyNumberCard(CardError):
    """SELECT of an expected application or file answered 6A82."""

    code = "not_my_number_card"
    title = "個人番号カードではありません"

    def default_message(self) -> str:
        return "置かれたカードは個人番号カードとして読み取れません。カードを確認してください。"


class NotOperatorCard(CardError):
    code = "not_operator_card"
    title = "操作者カードではありません"

    def default_message(self) -> str:
        return "置かれたカードは操作者識別カードではありません。"


class MalformedCardData(CardError):
    """A file on the card does not have the layout the card is specified to have."""

    code = "malformed_card_data"
    title = "カードのデータが不正です"

    def default_message(self) -> str:
        return "カードに記録されたデータの形式が正しくありません。"


class ReaderUnavailable(CardError):
    code = "reader_unavailable"
    title = "カードリーダが使用できません"

    def default_message(self) -> str:
        return (
            "カードリーダに接続できません。リーダの接続と"
            "PC/SCサービス（pcscd）の起動を確認してください。"
        )


class SecurityStatusNotSatisfied(CardError):
    code = "security_status_not_satisfied"
    title = "暗証番号の照合が必要です"

    def default_message(self) -> str:
        return "暗証番号の照合が済んでいないため、カードの情報を読み取れません。"


class UnexpectedStatus(CardError):
    code = "unexpected_status"
    title = "カードの応答が不正です"

    def __init__(self, sw: int, *, detail: str = "") -> None:
        self.sw = sw
        super().__init__(detail=detail or f"SW={sw:04X}")

    def default_message(self) -> str:
        return f"カードが想定外の応答（{self.sw:04X}）を返しました。"


class InvalidCardImage(CardError):
    """A virtual card image file is unreadable or inconsistent."""

    code = "invalid_card_image"
    title = "カードイメージが不正です"

    def default_message(self) -> str:
        return "仮想カードのイメージファイルを読み込めません。"


class SlotOccupied(CardError):
    code = "slot_occupied"
    title = "スロットは使用中です"

    def default_message(self) -> str:
        return "このスロットには既にカードが挿入されています。先に取り外してください。"


def error_for_status(sw: int) -> CardError | None:
    """The error a status word means, or None for 9000.

    Total over 0..0xFFFF (the fuzz bench checks it), so a caller can map whatever the card says.
    6A82 reads as "not a My Number card": the reader only selects applications and files that
    every genuine card has. End-of-file words are the READ BINARY loop's business and only reach
    this function when something else went wrong, hence ``UnexpectedStatus``.
    """
    detail = f"SW={sw & 0xFFFF:04X}"
    if sw == c.SW_OK:
        return None
    if sw == c.SW_VERIFY_FAILED_BASE or sw in (c.SW_AUTH_METHOD_BLOCKED, c.SW_REFERENCE_BLOCKED):
        return PinBlocked(detail=detail)
    if sw & 0xFFF0 == c.SW_VERIFY_FAILED_BASE:
        return WrongPin(sw & 0x000F, detail=detail)
    if sw == c.SW_VERIFY_FAILED_NO_COUNTER:
        return WrongPin(None, detail=detail)
    if sw == c.SW_SECURITY_NOT_SATISFIED:
        return SecurityStatusNotSatisfied(detail=detail)
    if sw == c.SW_FILE_NOT_FOUND:
        return NotMyNumberCard(detail=detail)
    return UnexpectedStatus(sw & 0xFFFF)


def check_status(sw: int) -> None:
    """Raise the error ``sw`` means; return quietly on 9000."""
    err = error_for_status(sw)
    if err is not None:
        raise err
