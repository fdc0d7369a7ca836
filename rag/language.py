"""Which language to answer in, language names, and the few fixed messages in the user's language.

Questions are short, and statistical identifiers guess badly on a handful of words. The writing system is
a much surer sign for most non-Latin scripts (Telugu script is Telugu), so the script decides where it is
unambiguous; the identifier (``lusifer_rag.ingest.langid``) decides between the languages that share a script.
"""

from __future__ import annotations

import regex

from lusifer_rag.errors import ConfigError

DEFAULT_LANGUAGE = "en"
MIN_CONFIDENCE = 0.5  # below this the identifier's guess is only used when the script agrees

# script (as the ``regex`` module names it) -> language, where one language dominates the script
_SCRIPT_LANGUAGE = {
    "Telugu": "te", "Tamil": "ta", "Bengali": "bn", "Thai": "th", "Hangul": "ko", "Ethiopic": "am",
    "Greek": "el", "Hebrew": "he", "Georgian": "ka", "Armenian": "hy", "Gujarati": "gu", "Gurmukhi": "pa",
    "Kannada": "kn", "Malayalam": "ml", "Oriya": "or", "Sinhala": "si", "Khmer": "km", "Lao": "lo",
    "Myanmar": "my", "Tibetan": "bo", "Devanagari": "hi", "Arabic": "ar", "Cyrillic": "ru", "Han": "zh",
    "Hiragana": "ja", "Katakana": "ja",
}
# languages the identifier may pick inside a shared script (anything else there falls back to the script's default)
_SHARED_SCRIPT = {
    "Devanagari": {"hi", "mr", "ne", "sa", "mai", "bho"},
    "Arabic": {"ar", "fa", "ur", "ps", "ku", "ckb", "sd", "ug"},
    "Cyrillic": {"ru", "uk", "bg", "sr", "mk", "be", "kk", "ky", "mn", "tg", "tt", "ba"},
    "Han": {"zh", "ja", "yue"},
    "Bengali": {"bn", "as"},
    "Ethiopic": {"am", "ti"},
}
_SCRIPT_PATTERNS = {script: regex.compile(r"\p{Script=%s}" % script) for script in _SCRIPT_LANGUAGE}
_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}]")
_PERSIAN = regex.compile(r"[پچژگکی]")  # letters Persian uses and Arabic does not (ک/ی are the Persian forms)
_URDU = regex.compile(r"[ٹڈڑںھےۓ]")
_LATIN = regex.compile(r"\p{Latin}")
_CODE = regex.compile(r"^[a-z]{2,3}$")

# code -> (English name, native name)
LANGUAGE_NAMES: dict[str, tuple[str, str]] = {
    "en": ("English", "English"), "fr": ("French", "français"), "es": ("Spanish", "español"),
    "de": ("German", "Deutsch"), "pt": ("Portuguese", "português"), "it": ("Italian", "italiano"),
    "nl": ("Dutch", "Nederlands"), "sv": ("Swedish", "svenska"), "da": ("Danish", "dansk"),
    "no": ("Norwegian", "norsk"), "nb": ("Norwegian Bokmål", "norsk bokmål"), "fi": ("Finnish", "suomi"),
    "pl": ("Polish", "polski"), "cs": ("Czech", "čeština"), "sk": ("Slovak", "slovenčina"),
    "hu": ("Hungarian", "magyar"), "ro": ("Romanian", "română"), "el": ("Greek", "Ελληνικά"),
    "tr": ("Turkish", "Türkçe"), "ru": ("Russian", "русский"), "uk": ("Ukrainian", "українська"),
    "bg": ("Bulgarian", "български"), "sr": ("Serbian", "српски"), "hr": ("Croatian", "hrvatski"),
    "ar": ("Arabic", "العربية"), "fa": ("Persian", "فارسی"), "ur": ("Urdu", "اردو"), "he": ("Hebrew", "עברית"),
    "hi": ("Hindi", "हिन्दी"), "mr": ("Marathi", "मराठी"), "ne": ("Nepali", "नेपाली"), "bn": ("Bengali", "বাংলা"),
    "te": ("Telugu", "తెలుగు"), "ta": ("Tamil", "தமிழ்"), "kn": ("Kannada", "ಕನ್ನಡ"), "ml": ("Malayalam", "മലയാളം"),
    "gu": ("Gujarati", "ગુજરાતી"), "pa": ("Punjabi", "ਪੰਜਾਬੀ"), "si": ("Sinhala", "සිංහල"),
    "zh": ("Chinese", "中文"), "ja": ("Japanese", "日本語"), "ko": ("Korean", "한국어"), "vi": ("Vietnamese", "Tiếng Việt"),
    "th": ("Thai", "ไทย"), "id": ("Indonesian", "Bahasa Indonesia"), "ms": ("Malay", "Bahasa Melayu"),
    "tl": ("Tagalog", "Tagalog"), "km": ("Khmer", "ខ្មែរ"), "my": ("Burmese", "မြန်မာ"), "lo": ("Lao", "ລາວ"),
    "sw": ("Swahili", "Kiswahili"), "yo": ("Yoruba", "Yorùbá"), "ha": ("Hausa", "Hausa"), "ig": ("Igbo", "Igbo"),
    "zu": ("Zulu", "isiZulu"), "xh": ("Xhosa", "isiXhosa"), "am": ("Amharic", "አማርኛ"), "so": ("Somali", "Soomaali"),
    "ka": ("Georgian", "ქართული"), "hy": ("Armenian", "Հայերեն"), "kk": ("Kazakh", "қазақ тілі"),
    "uz": ("Uzbek", "oʻzbekcha"), "az": ("Azerbaijani", "azərbaycan"), "ca": ("Catalan", "català"),
    "eu": ("Basque", "euskara"), "gl": ("Galician", "galego"), "cy": ("Welsh", "Cymraeg"), "ga": ("Irish", "Gaeilge"),
    "et": ("Estonian", "eesti"), "lv": ("Latvian", "latviešu"), "lt": ("Lithuanian", "lietuvių"),
    "sl": ("Slovenian", "slovenščina"), "is": ("Icelandic", "íslenska"), "af": ("Afrikaans", "Afrikaans"),
}

# "nothing relevant found" — the answer when retrieval returned nothing usable
NO_CONTEXT: dict[str, str] = {
    "en": "I could not find anything relevant to your question in the documents.",
    "fr": "Je n'ai rien trouvé de pertinent pour votre question dans les documents.",
    "es": "No he encontrado nada relevante para su pregunta en los documentos.",
    "de": "Ich habe in den Dokumenten nichts gefunden, das für Ihre Frage relevant ist.",
    "pt": "Não encontrei nada relevante para a sua pergunta nos documentos.",
    "it": "Non ho trovato nulla di pertinente alla tua domanda nei documenti.",
    "ru": "Я не нашёл в документах ничего, что относилось бы к вашему вопросу.",
    "ar": "لم أجد في المستندات أي شيء ذي صلة بسؤالك.",
    "fa": "در اسناد چیزی مرتبط با پرسش شما پیدا نکردم.",
    "hi": "मुझे दस्तावेज़ों में आपके प्रश्न से संबंधित कुछ भी नहीं मिला।",
    "bn": "নথিগুলিতে আপনার প্রশ্নের সঙ্গে সম্পর্কিত কিছুই খুঁজে পাইনি।",
    "te": "పత్రాలలో మీ ప్రశ్నకు సంబంధించినది ఏదీ నాకు కనబడలేదు.",
    "ta": "ஆவணங்களில் உங்கள் கேள்விக்குத் தொடர்புடைய எதையும் என்னால் கண்டுபிடிக்க முடியவில்லை.",
    "ur": "مجھے دستاویزات میں آپ کے سوال سے متعلق کچھ نہیں ملا۔",
    "sw": "Sikupata chochote kinachohusiana na swali lako katika nyaraka.",
    "yo": "Mi ò rí ohunkóhun tó jẹmọ́ ìbéèrè rẹ nínú àwọn ìwé náà.",
    "ha": "Ban sami wani abu da ya shafi tambayarka a cikin takardun ba.",
    "am": "በሰነዶቹ ውስጥ ከጥያቄዎ ጋር የሚዛመድ ምንም ነገር አላገኘሁም።",
    "zh": "我在文档中没有找到与您的问题相关的内容。",
    "ja": "ドキュメントの中に、ご質問に関連する内容は見つかりませんでした。",
    "ko": "문서에서 질문과 관련된 내용을 찾지 못했습니다.",
    "vi": "Tôi không tìm thấy nội dung nào liên quan đến câu hỏi của bạn trong các tài liệu.",
    "th": "ไม่พบข้อมูลที่เกี่ยวข้องกับคำถามของคุณในเอกสาร",
    "id": "Saya tidak menemukan apa pun yang relevan dengan pertanyaan Anda di dalam dokumen.",
    "tr": "Belgelerde sorunuzla ilgili hiçbir şey bulamadım.",
}

# the label in front of extractive answers (no language model configured)
EXTRACTS_LABEL: dict[str, str] = {
    "en": "Extracts from your documents (no language model is configured):",
    "fr": "Extraits de vos documents (aucun modèle de langage n'est configuré) :",
    "es": "Extractos de sus documentos (no hay ningún modelo de lenguaje configurado):",
    "de": "Auszüge aus Ihren Dokumenten (es ist kein Sprachmodell konfiguriert):",
    "pt": "Trechos dos seus documentos (nenhum modelo de linguagem está configurado):",
    "it": "Estratti dai tuoi documenti (nessun modello linguistico è configurato):",
    "ru": "Выдержки из ваших документов (языковая модель не настроена):",
    "ar": "مقتطفات من مستنداتك (لم يتم إعداد أي نموذج لغوي):",
    "fa": "گزیده‌هایی از اسناد شما (هیچ مدل زبانی پیکربندی نشده است):",
    "hi": "आपके दस्तावेज़ों के अंश (कोई भाषा मॉडल कॉन्फ़िगर नहीं है):",
    "bn": "আপনার নথি থেকে উদ্ধৃতি (কোনো ভাষা মডেল কনফিগার করা নেই):",
    "te": "మీ పత్రాల నుండి సంగ్రహాలు (భాషా నమూనా ఏదీ కాన్ఫిగర్ చేయబడలేదు):",
    "ta": "உங்கள் ஆவணங்களிலிருந்து எடுக்கப்பட்ட பகுதிகள் (மொழி மாதிரி எதுவும் அமைக்கப்படவில்லை):",
    "ur": "آپ کی دستاویزات سے اقتباسات (کوئی لسانی ماڈل ترتیب نہیں دیا گیا):",
    "sw": "Madondoo kutoka kwenye nyaraka zako (hakuna modeli ya lugha iliyowekwa):",
    "yo": "Àyọlò láti inú àwọn ìwé rẹ (kò sí àwòṣe èdè tí a ṣètò):",
    "ha": "Abubuwan da aka ciro daga takardunka (ba a saita wani tsarin harshe ba):",
    "am": "ከሰነዶችዎ የተወሰዱ ጥቅሶች (ምንም የቋንቋ ሞዴል አልተዋቀረም)፦",
    "zh": "摘自您的文档（未配置语言模型）：",
    "ja": "ドキュメントからの抜粋（言語モデルが設定されていません）：",
    "ko": "문서 발췌 (구성된 언어 모델이 없습니다):",
    "vi": "Trích đoạn từ tài liệu của bạn (chưa cấu hình mô hình ngôn ngữ):",
    "th": "ข้อความที่ตัดตอนมาจากเอกสารของคุณ (ยังไม่ได้กำหนดค่าโมเดลภาษา):",
    "id": "Kutipan dari dokumen Anda (tidak ada model bahasa yang dikonfigurasi):",
    "tr": "Belgelerinizden alıntılar (yapılandırılmış bir dil modeli yok):",
}


def normalize_language(code: str) -> str:
    """'pt-BR' → 'pt', 'ZH_hans' → 'zh'; a ConfigError for anything that is not a language code."""
    if not isinstance(code, str):
        raise ConfigError(f"answer language must be an ISO 639 code such as 'en' or 'te', got {code!r}")
    base = code.strip().lower().replace("_", "-").split("-")[0]
    if not _CODE.match(base):
        raise ConfigError(f"answer language must be an ISO 639 code such as 'en', 'te' or 'pt-BR', got {code!r}")
    return base


def dominant_script(text: str) -> str | None:
    """The most frequent non-Latin script among the letters of ``text`` when it outnumbers Latin letters."""
    counts = {script: len(p.findall(text)) for script, p in _SCRIPT_PATTERNS.items()}
    script, n = max(counts.items(), key=lambda kv: kv[1])
    if n == 0 or n < len(_LATIN.findall(text)):
        return None
    if script in ("Han", "Hiragana", "Katakana") and _KANA.search(text):
        return "Hiragana"  # any kana in CJK text means Japanese
    return script


def detect_query_language(text: str, default: str = DEFAULT_LANGUAGE) -> str:
    """ISO 639-1 code of a (short) question; ``default`` when nothing can be told."""
    script = dominant_script(text)
    guess, conf = _identify(text)
    if script is not None:
        allowed = _SHARED_SCRIPT.get(script)
        if allowed and guess in allowed and conf >= MIN_CONFIDENCE:
            return guess
        lang = _SCRIPT_LANGUAGE[script]
        if script == "Arabic":
            lang = "ur" if _URDU.search(text) else "fa" if _PERSIAN.search(text) else "ar"
        return lang
    if guess not in ("und", "") and _CODE.match(guess):
        return guess
    return default


def _identify(text: str) -> tuple[str, float]:
    try:
        from lusifer_rag.ingest.langid import detect_language
    except ImportError:  # ingest not installed: script detection alone
        return "und", 0.0
    return detect_language(text)


def language_name(code: str) -> str:
    """English name of a language ('te' → 'Telugu'); the code itself when unknown."""
    return LANGUAGE_NAMES.get(code, (code, code))[0]


def native_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, (code, code))[1]


def no_context_message(code: str) -> str:
    """'Nothing relevant found' in language ``code`` (English when there is no translation)."""
    return NO_CONTEXT.get(code, NO_CONTEXT[DEFAULT_LANGUAGE])


def extracts_label(code: str) -> str:
    return EXTRACTS_LABEL.get(code, EXTRACTS_LABEL[DEFAULT_LANGUAGE])
