from engines.text import normalize_text, split_into_chunks, split_sentences


def test_sentences_split_on_latin_and_cjk_punctuation():
    assert split_sentences("Hello there.  How are you? Fine!") == ["Hello there.", "How are you?", "Fine!"]
    assert split_sentences("你好。今天天气很好！我们走吧") == ["你好。", "今天天气很好！", "我们走吧"]


def test_decimal_points_and_abbreviation_like_dots_do_not_split():
    assert split_sentences("It costs 3.50 dollars.") == ["It costs 3.50 dollars."]


def test_short_sentences_are_packed_and_chunks_respect_the_limit():
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    chunks = split_into_chunks(text, max_chars=120)
    assert all(len(chunk) <= 120 for chunk in chunks)
    assert len(chunks) > 5
    assert normalize_text(" ".join(chunks)) == normalize_text(text)
    # Boundaries fall between sentences, never inside one.
    assert all(chunk.endswith(".") for chunk in chunks)


def test_overlong_sentence_splits_at_clauses_then_words_then_hard():
    clause_text = ", ".join(["word " * 10] * 6).strip()
    chunks = split_into_chunks(clause_text, max_chars=80)
    assert all(len(chunk) <= 80 for chunk in chunks) and len(chunks) >= 3
    no_spaces = "字" * 250
    hard = split_into_chunks(no_spaces, max_chars=100)
    assert [len(chunk) for chunk in hard] == [100, 100, 50]


def test_whitespace_only_text_has_no_chunks():
    assert split_into_chunks(" \n\t ") == []
