import math

from ml_cost_exporter.sources.expfmt import iter_samples, parse_labels, sample_pattern


def samples(text: str, *names: str):
    return list(iter_samples(text, sample_pattern(names)))


def test_only_the_requested_names_are_returned_and_prefixes_do_not_match():
    text = "a_total 1\na_total_extra 2\nb_total{x=\"1\"} 3\n# a_total 9\n a_total 8\n"
    assert samples(text, "a_total") == [("a_total", "", "1")]


def test_label_values_may_hold_braces_quotes_commas_and_escapes():
    text = 'm{path="/a{b}",q="say \\"hi\\", ok",nl="x\\ny",bs="c:\\\\d"} 7\n'
    ((_, block, value),) = samples(text, "m")
    assert value == "7"
    assert parse_labels(block) == {"path": "/a{b}", "q": 'say "hi", ok', "nl": "x\ny", "bs": "c:\\d"}


def test_timestamps_openmetrics_eof_and_colons_in_names_are_handled():
    text = "# TYPE vllm:x counter\nvllm:x_total{a=\"1\"} 5 1700000000000\n# EOF\n"
    assert samples(text, "vllm:x_total") == [("vllm:x_total", 'a="1"', "5")]


def test_trailing_comma_as_java_clients_write_it_is_accepted():
    assert parse_labels('model_name="mnist",hostname="h",') == {"model_name": "mnist", "hostname": "h"}


def test_malformed_label_blocks_are_rejected_not_guessed():
    assert parse_labels('a="1" garbage') is None
    assert parse_labels('=1') is None


def test_special_float_values_are_passed_through_for_the_caller_to_judge():
    values = [v for _, _, v in samples("m NaN\nm +Inf\nm -1e3\n", "m")]
    assert math.isnan(float(values[0])) and float(values[1]) == math.inf and float(values[2]) == -1000
