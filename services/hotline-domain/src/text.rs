//! Text normalisation shared by every matcher, so that a phrase found in one place is found in all.

/// Common traditional characters and their simplified forms (sorted by the traditional one), so
/// an appeal typed in traditional script meets the same phrases and features. Not a full
/// converter: the characters that appeals about schools actually use.
const TRADITIONAL: &[(char, char)] = &[
    ('來', '来'),
    ('個', '个'),
    ('們', '们'),
    ('傳', '传'),
    ('傷', '伤'),
    ('價', '价'),
    ('兒', '儿'),
    ('內', '内'),
    ('劃', '划'),
    ('務', '务'),
    ('勞', '劳'),
    ('區', '区'),
    ('協', '协'),
    ('參', '参'),
    ('員', '员'),
    ('問', '问'),
    ('單', '单'),
    ('嗎', '吗'),
    ('嚴', '严'),
    ('園', '园'),
    ('報', '报'),
    ('壓', '压'),
    ('孫', '孙'),
    ('學', '学'),
    ('實', '实'),
    ('對', '对'),
    ('導', '导'),
    ('島', '岛'),
    ('師', '师'),
    ('幫', '帮'),
    ('廠', '厂'),
    ('廣', '广'),
    ('廳', '厅'),
    ('從', '从'),
    ('愛', '爱'),
    ('態', '态'),
    ('應', '应'),
    ('戶', '户'),
    ('揚', '扬'),
    ('擁', '拥'),
    ('擔', '担'),
    ('據', '据'),
    ('數', '数'),
    ('時', '时'),
    ('書', '书'),
    ('會', '会'),
    ('東', '东'),
    ('條', '条'),
    ('業', '业'),
    ('構', '构'),
    ('樓', '楼'),
    ('標', '标'),
    ('機', '机'),
    ('檢', '检'),
    ('歲', '岁'),
    ('殘', '残'),
    ('沒', '没'),
    ('淩', '凌'),
    ('減', '减'),
    ('準', '准'),
    ('災', '灾'),
    ('營', '营'),
    ('現', '现'),
    ('產', '产'),
    ('畢', '毕'),
    ('當', '当'),
    ('發', '发'),
    ('碼', '码'),
    ('竊', '窃'),
    ('範', '范'),
    ('紅', '红'),
    ('紙', '纸'),
    ('級', '级'),
    ('細', '细'),
    ('終', '终'),
    ('結', '结'),
    ('絡', '络'),
    ('給', '给'),
    ('綜', '综'),
    ('網', '网'),
    ('緊', '紧'),
    ('線', '线'),
    ('編', '编'),
    ('練', '练'),
    ('縣', '县'),
    ('總', '总'),
    ('績', '绩'),
    ('繫', '系'),
    ('繳', '缴'),
    ('續', '续'),
    ('罰', '罚'),
    ('羅', '罗'),
    ('義', '义'),
    ('習', '习'),
    ('聯', '联'),
    ('職', '职'),
    ('腦', '脑'),
    ('腳', '脚'),
    ('臉', '脸'),
    ('與', '与'),
    ('舉', '举'),
    ('藝', '艺'),
    ('處', '处'),
    ('號', '号'),
    ('蟲', '虫'),
    ('術', '术'),
    ('衛', '卫'),
    ('補', '补'),
    ('裡', '里'),
    ('規', '规'),
    ('視', '视'),
    ('訓', '训'),
    ('評', '评'),
    ('詢', '询'),
    ('試', '试'),
    ('話', '话'),
    ('該', '该'),
    ('認', '认'),
    ('語', '语'),
    ('說', '说'),
    ('課', '课'),
    ('請', '请'),
    ('諮', '谘'),
    ('證', '证'),
    ('識', '识'),
    ('議', '议'),
    ('護', '护'),
    ('讓', '让'),
    ('負', '负'),
    ('貧', '贫'),
    ('貴', '贵'),
    ('費', '费'),
    ('資', '资'),
    ('賠', '赔'),
    ('質', '质'),
    ('贈', '赠'),
    ('趕', '赶'),
    ('跡', '迹'),
    ('車', '车'),
    ('輔', '辅'),
    ('轉', '转'),
    ('辦', '办'),
    ('農', '农'),
    ('這', '这'),
    ('運', '运'),
    ('過', '过'),
    ('違', '违'),
    ('適', '适'),
    ('選', '选'),
    ('遺', '遗'),
    ('還', '还'),
    ('郵', '邮'),
    ('鄉', '乡'),
    ('醫', '医'),
    ('錄', '录'),
    ('錢', '钱'),
    ('鎮', '镇'),
    ('鐘', '钟'),
    ('鑰', '钥'),
    ('長', '长'),
    ('開', '开'),
    ('間', '间'),
    ('關', '关'),
    ('陽', '阳'),
    ('隊', '队'),
    ('際', '际'),
    ('隨', '随'),
    ('險', '险'),
    ('雙', '双'),
    ('雜', '杂'),
    ('雞', '鸡'),
    ('離', '离'),
    ('難', '难'),
    ('電', '电'),
    ('韓', '韩'),
    ('響', '响'),
    ('頁', '页'),
    ('預', '预'),
    ('領', '领'),
    ('頭', '头'),
    ('題', '题'),
    ('類', '类'),
    ('顧', '顾'),
    ('風', '风'),
    ('飛', '飞'),
    ('飯', '饭'),
    ('養', '养'),
    ('館', '馆'),
    ('騙', '骗'),
    ('騷', '骚'),
    ('驗', '验'),
    ('體', '体'),
    ('髮', '发'),
    ('鬧', '闹'),
    ('魚', '鱼'),
    ('麥', '麦'),
    ('麼', '么'),
    ('黨', '党'),
    ('齊', '齐'),
    ('齒', '齿'),
    ('齡', '龄'),
    ('龍', '龙'),
];

/// The CJK Unified Ideographs block, where every character of [`TRADITIONAL`] lies.
const CJK_FIRST: u32 = 0x4E00;
const CJK_LAST: u32 = 0x9FFF;

/// One bit per character of the CJK block: set when [`TRADITIONAL`] has it. Most ideographs of
/// an appeal are not in the table, and the bitmap says so without a binary search.
const TRADITIONAL_BITMAP: [u64; ((CJK_LAST - CJK_FIRST) / 64 + 1) as usize] = {
    let mut bits = [0u64; ((CJK_LAST - CJK_FIRST) / 64 + 1) as usize];
    let mut i = 0;
    while i < TRADITIONAL.len() {
        let code = TRADITIONAL[i].0 as u32;
        assert!(
            code >= CJK_FIRST && code <= CJK_LAST,
            "traditional characters are CJK"
        );
        let offset = code - CJK_FIRST;
        bits[(offset / 64) as usize] |= 1 << (offset % 64);
        i += 1;
    }
    bits
};

fn simplify(c: char) -> char {
    let code = c as u32;
    if !(CJK_FIRST..=CJK_LAST).contains(&code) {
        return c;
    }
    let offset = code - CJK_FIRST;
    if TRADITIONAL_BITMAP[(offset / 64) as usize] & (1 << (offset % 64)) == 0 {
        return c;
    }
    TRADITIONAL
        .binary_search_by_key(&c, |(t, _)| *t)
        .map_or(c, |i| TRADITIONAL[i].1)
}

fn normalise_char(c: char) -> char {
    match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => {
            char::from_u32(c as u32 - 0xFEE0).map_or(c, |h| h.to_ascii_lowercase())
        }
        _ => simplify(c).to_ascii_lowercase(),
    }
}

/// Full-width ASCII to half-width, ideographic space to space, ASCII lower-cased, common
/// traditional characters to simplified. Chinese text is otherwise kept as written.
pub fn normalise(text: &str) -> String {
    // Most characters stay as they are: copy runs of them as they stand rather than decoding and
    // re-encoding each one.
    let mut normalised = String::with_capacity(text.len());
    let mut unchanged_from = 0;
    for (at, c) in text.char_indices() {
        let mapped = normalise_char(c);
        if mapped != c {
            normalised.push_str(&text[unchanged_from..at]);
            normalised.push(mapped);
            unchanged_from = at + c.len_utf8();
        }
    }
    normalised.push_str(&text[unchanged_from..]);
    normalised
}

/// A set of phrases found in text by one Aho-Corasick pass: every non-overlapping occurrence,
/// leftmost first, the longest phrase winning where several start at the same place.
#[derive(Debug, Clone)]
pub struct PhraseSet {
    phrases: Vec<String>,
    automaton: aho_corasick::AhoCorasick,
    /// Automaton pattern → phrase index (empty phrases are left out of the automaton).
    pattern_to_phrase: Vec<usize>,
}

impl PhraseSet {
    /// Phrases must already be normalised.
    pub fn new(phrases: Vec<String>) -> Self {
        let pattern_to_phrase: Vec<usize> = (0..phrases.len())
            .filter(|i| !phrases[*i].is_empty())
            .collect();
        let automaton = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(pattern_to_phrase.iter().map(|i| phrases[*i].as_str()))
            .expect("phrase sets are small enough for an automaton");
        Self {
            phrases,
            automaton,
            pattern_to_phrase,
        }
    }

    pub fn phrases(&self) -> &[String] {
        &self.phrases
    }

    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// (byte offset, phrase index) of each match.
    pub fn find(&self, haystack: &str) -> Vec<(usize, usize)> {
        self.automaton
            .find_iter(haystack)
            .map(|m| (m.start(), self.pattern_to_phrase[m.pattern().as_usize()]))
            .collect()
    }
}

/// Several [`PhraseSet`]s searched in one pass over the text. One automaton over all their
/// phrases reports every occurrence; each set's matches are then chosen as its own automaton
/// would choose them (leftmost, the longest where several start at one place, none
/// overlapping). Classifying an appeal looks for topic phrases, urgency cues, districts and
/// schools: four scans of the text were a sixth of its cost.
#[derive(Debug, Clone)]
pub struct PhraseScan {
    automaton: aho_corasick::AhoCorasick,
    /// Automaton pattern → (set, phrase index in that set). Patterns are added set by set, each
    /// set's in its own order, so a lower pattern wins a tie as it does in [`PhraseSet`].
    patterns: Vec<(usize, usize)>,
    sets: usize,
}

/// Matches of one [`PhraseScan`]: for each set, (byte offset, phrase index) as
/// [`PhraseSet::find`] gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanMatches(Vec<Vec<(usize, usize)>>);

impl ScanMatches {
    /// The matches of the set at `set` (its position in [`PhraseScan::new`]'s list).
    pub fn of(&self, set: usize) -> &[(usize, usize)] {
        self.0.get(set).map_or(&[], Vec::as_slice)
    }
}

impl PhraseScan {
    pub fn new(sets: &[&PhraseSet]) -> Self {
        let patterns: Vec<(usize, usize)> = sets
            .iter()
            .enumerate()
            .flat_map(|(set, phrases)| {
                phrases
                    .pattern_to_phrase
                    .iter()
                    .map(move |phrase| (set, *phrase))
            })
            .collect();
        let automaton = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::Standard)
            .build(
                patterns
                    .iter()
                    .map(|(set, phrase)| sets[*set].phrases[*phrase].as_str()),
            )
            .expect("phrase sets are small enough for an automaton");
        Self {
            automaton,
            patterns,
            sets: sets.len(),
        }
    }

    pub fn find(&self, haystack: &str) -> ScanMatches {
        // (set, start, end, pattern) of every occurrence of every phrase.
        let mut all: Vec<(usize, usize, usize, usize)> = self
            .automaton
            .find_overlapping_iter(haystack)
            .map(|m| {
                let pattern = m.pattern().as_usize();
                (self.patterns[pattern].0, m.start(), m.end(), pattern)
            })
            .collect();
        // Per set: leftmost first, then longest, then the earlier pattern.
        all.sort_unstable_by_key(|&(set, start, end, pattern)| {
            (set, start, std::cmp::Reverse(end), pattern)
        });
        let mut found = vec![Vec::new(); self.sets];
        let mut free_from = vec![0; self.sets];
        for (set, start, end, pattern) in all {
            if start >= free_from[set] {
                found[set].push((start, self.patterns[pattern].1));
                free_from[set] = end;
            }
        }
        ScanMatches(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_width_and_case() {
        let check = |input: &str, expected: &str| assert_eq!(normalise(input), expected, "{input}");
        check("ＡＢＣ１２３", "abc123");
        check("食堂　饭菜", "食堂 饭菜");
        check("Hello，世界！", "hello,世界!");
        check("", "");
        check("學校食堂飯菜太貴", "学校食堂饭菜太贵");
        check("補習班退費難", "补习班退费难");
    }

    #[test]
    fn the_bitmap_agrees_with_the_table() {
        for code in CJK_FIRST..=CJK_LAST {
            let c = char::from_u32(code).expect("the CJK block is all characters");
            let listed = TRADITIONAL
                .binary_search_by_key(&c, |(t, _)| *t)
                .map_or(c, |i| TRADITIONAL[i].1);
            assert_eq!(simplify(c), listed, "{c}");
        }
    }

    #[test]
    fn normalising_copies_runs_as_mapping_each_character_would() {
        for text in [
            "",
            "學",
            "a",
            "ＡＢＣ學校　食堂ABC",
            "孩子在学校被同学打了，怎么办？",
            "！！！",
            "補習班退費難，Ｑ：怎麼辦",
        ] {
            let each: String = text.chars().map(normalise_char).collect();
            assert_eq!(normalise(text), each, "{text}");
        }
    }

    #[test]
    fn the_traditional_table_is_sorted_for_binary_search() {
        assert!(TRADITIONAL.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn one_scan_finds_what_each_set_finds_alone() {
        let sets = [
            PhraseSet::new(vec![
                "食堂".into(),
                "食堂饭菜".into(),
                "饭菜".into(),
                String::new(),
                "菜".into(),
            ]),
            PhraseSet::new(vec!["市南".into(), "市南区".into(), "南区".into()]),
            // The same phrase twice, and a phrase another set has: the first listed wins.
            PhraseSet::new(vec![
                "实验小学".into(),
                "市南区实验小学".into(),
                "实验小学".into(),
            ]),
            PhraseSet::new(vec!["饭菜".into(), "溺水".into()]),
            PhraseSet::new(Vec::new()),
        ];
        let scan = PhraseScan::new(&sets.iter().collect::<Vec<_>>());
        for text in [
            "",
            "没有",
            "市南区实验小学食堂饭菜太差，菜里有虫",
            "实验小学实验小学市南市南区南区",
            "饭菜饭菜食堂饭菜菜",
            "孩子溺水了",
        ] {
            let matches = scan.find(text);
            for (index, set) in sets.iter().enumerate() {
                assert_eq!(matches.of(index), set.find(text), "{text}, set {index}");
            }
        }
    }

    #[test]
    fn longest_match_wins() {
        let set = PhraseSet::new(vec![
            "市南".to_owned(),
            "市南区".to_owned(),
            String::new(),
            "李沧区".to_owned(),
        ]);
        let found = set.find("我在市南区和李沧区，市南");
        assert_eq!(found.iter().map(|f| f.1).collect::<Vec<_>>(), vec![1, 3, 0]);
        assert!(set.find("").is_empty());
    }
}
