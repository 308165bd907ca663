"""The sample events and their page: events/README.md is what events/describe.py writes from the
samples as they are, so it cannot fall behind them.

    .venv/bin/python -m unittest discover -s tests/python -v      (from the repository root)
"""
import os
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "events"))

import describe  # noqa: E402


class EventsPageTest(unittest.TestCase):
    def test_the_page_is_current_and_covers_every_sample(self):
        with open(os.path.join(ROOT, "events", "README.md")) as f:
            self.assertEqual(f.read(), describe.render(), "run `make events`")
        samples = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "events")) if f.endswith(".json"))
        self.assertEqual(sorted(name for name, _ in describe.SAMPLES), samples)

    def test_records_are_decoded_as_a_person_reads_them(self):
        page = describe.render()
        self.assertIn("not base64: `this is not base64!!`", page)
        self.assertIn("KPL user record, key `order-4002`", page)
        self.assertIn("its digest is wrong", page)
        self.assertIn('| 6 | 3103 |', page, "a numeric partition key is shown as it is")


if __name__ == "__main__":
    unittest.main()
