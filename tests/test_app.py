from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).parent.parent


def test_app_starts_on_the_home_page_and_lists_the_methods():
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value == "MSA Dashboard"
    assert any("kernel" in md.value for md in app.markdown)
