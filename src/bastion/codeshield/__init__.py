"""Code shield: find insecure code in model output (and in files), and propose verified patches.

>>> from bastion.codeshield import scan_response
>>> scan_response("```python\\nimport yaml\\ncfg = yaml.load(open('c.yml'))\\n```").categories
('S14',)
"""

from .api import CodeShieldResult, scan_response
from .evaluate import InsecureCodeRate, insecure_code_rate, load_seeds
from .fixes import FixResult, TextFix, fix_code, fix_text, verify
from .languages import detect as detect_language
from .rules import Rule, all_rules
from .scanner import CodeBlock, Finding, extract_blocks, scan_code, scan_path, scan_text

__all__ = [
    "CodeBlock", "CodeShieldResult", "Finding", "FixResult", "InsecureCodeRate", "Rule", "TextFix", "all_rules",
    "detect_language", "extract_blocks", "fix_code", "fix_text", "insecure_code_rate", "load_seeds", "scan_code",
    "scan_path", "scan_response", "scan_text", "verify",
]
