/*
 * sms_encoding.c — GSM-7 / UCS-2 choice, unit counts and part packing.
 *
 * Two passes over the text: the first decodes UTF-8 (strictly: no overlong
 * forms, no surrogates, nothing above U+10FFFF) and learns whether every
 * character is in GSM 03.38; the second packs characters into parts with the
 * cost of the chosen encoding. A character is never split, which is what
 * keeps escape pairs and surrogate pairs whole.
 */
#include "nudgel/sms_encoding.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Septets a code point costs in GSM-7: 1 in the basic set, 2 in the extension
 * set (ESC + code), 0 when it has no GSM 03.38 form. The basic set is the
 * 127 characters of the default alphabet (128 positions less ESC), exactly as
 * gateways.md lists them; note that only capital Ç is there, not ç, and that
 * the backtick is in neither set.
 */
static unsigned gsm_septets(uint32_t cp)
{
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9'))
        return 1;
    if ((cp >= ' ' && cp <= '/') || (cp >= ':' && cp <= '?'))
        return 1; /* SP ! " # $ % & ' ( ) * + , - . /  and  : ; < = > ? */
    switch (cp) {
    case '\n':
    case '\r':
    case '@':
    case '_':
    case 0x00A1: /* ¡ */
    case 0x00A3: /* £ */
    case 0x00A4: /* ¤ */
    case 0x00A5: /* ¥ */
    case 0x00A7: /* § */
    case 0x00BF: /* ¿ */
    case 0x00C4: /* Ä */
    case 0x00C5: /* Å */
    case 0x00C6: /* Æ */
    case 0x00C7: /* Ç */
    case 0x00C9: /* É */
    case 0x00D1: /* Ñ */
    case 0x00D6: /* Ö */
    case 0x00D8: /* Ø */
    case 0x00DC: /* Ü */
    case 0x00DF: /* ß */
    case 0x00E0: /* à */
    case 0x00E4: /* ä */
    case 0x00E5: /* å */
    case 0x00E6: /* æ */
    case 0x00E8: /* è */
    case 0x00E9: /* é */
    case 0x00EC: /* ì */
    case 0x00F1: /* ñ */
    case 0x00F2: /* ò */
    case 0x00F6: /* ö */
    case 0x00F8: /* ø */
    case 0x00F9: /* ù */
    case 0x00FC: /* ü */
    case 0x0393: /* Γ */
    case 0x0394: /* Δ */
    case 0x0398: /* Θ */
    case 0x039B: /* Λ */
    case 0x039E: /* Ξ */
    case 0x03A0: /* Π */
    case 0x03A3: /* Σ */
    case 0x03A6: /* Φ */
    case 0x03A8: /* Ψ */
    case 0x03A9: /* Ω */
        return 1;
    case 0x000C: /* form feed */
    case '^':
    case '{':
    case '}':
    case '\\':
    case '[':
    case '~':
    case ']':
    case '|':
    case 0x20AC: /* € */
        return 2;
    default:
        return 0;
    }
}

/*
 * Decodes the code point at text[*pos] and advances *pos past it. Returns 0,
 * or -1 for a malformed sequence (truncated, bad continuation byte, overlong,
 * a surrogate code point or one above U+10FFFF), leaving *pos at its start.
 */
static int utf8_next(const unsigned char *text, size_t len, size_t *pos, uint32_t *cp)
{
    size_t i = *pos;
    unsigned char b = text[i];
    size_t need;
    uint32_t v, min;
    if (b < 0x80) {
        *cp = b;
        *pos = i + 1;
        return 0;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        v = b & 0x1Fu;
        min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        v = b & 0x0Fu;
        min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        v = b & 0x07u;
        min = 0x10000;
    } else {
        return -1; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    }
    if (len - i - 1 < need)
        return -1;
    for (size_t k = 1; k <= need; k++) {
        unsigned char c = text[i + k];
        if ((c & 0xC0) != 0x80)
            return -1;
        v = (v << 6) | (c & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return -1;
    *cp = v;
    *pos = i + 1 + need;
    return 0;
}

static unsigned ucs2_units(uint32_t cp)
{
    return cp >= 0x10000 ? 2 : 1;
}

/*
 * The shared body of measure and split. Returns NUDGEL_OK with @p info
 * filled and up to @p max_parts entries of @p parts written (parts may be
 * NULL to only count); NUDGEL_ERR_TOO_LARGE when more parts are needed than
 * @p max_parts, after counting all of them so @p info is complete.
 */
static nudgel_err_t analyse(const char *text, size_t len, nudgel_sms_part_t *parts,
                            size_t max_parts, nudgel_sms_info_t *info, char *errstr,
                            size_t errstr_size)
{
    const unsigned char *t = (const unsigned char *)text;
    bool gsm = true;
    size_t total = 0, pos = 0;
    uint32_t cp;

    if ((!text && len > 0) || !info) {
        snprintf(errstr, errstr_size, "sms_encoding: NULL argument");
        return NUDGEL_ERR_INVALID_ARG;
    }
    while (pos < len) {
        if (utf8_next(t, len, &pos, &cp) != 0) {
            snprintf(errstr, errstr_size, "body is not valid UTF-8 at byte %zu", pos);
            return NUDGEL_ERR_INVALID_FIELD;
        }
        if (gsm && gsm_septets(cp) == 0)
            gsm = false;
    }

    pos = 0;
    while (pos < len) {
        (void)utf8_next(t, len, &pos, &cp);
        total += gsm ? gsm_septets(cp) : ucs2_units(cp);
    }
    info->encoding = gsm ? NUDGEL_SMS_GSM7 : NUDGEL_SMS_UCS2;
    info->units = total;

    size_t single = gsm ? NUDGEL_SMS_GSM7_SINGLE : NUDGEL_SMS_UCS2_SINGLE;
    size_t limit = gsm ? NUDGEL_SMS_GSM7_PART : NUDGEL_SMS_UCS2_PART;
    if (total <= single) {
        info->segments = 1;
        if (parts && max_parts >= 1)
            parts[0] = (nudgel_sms_part_t){.offset = 0, .len = len, .units = total};
        goto done;
    }

    /* Greedy packing is optimal here: every character costs 1 or 2 and
       parts are filled in text order. */
    size_t n = 1, start = 0, used = 0;
    pos = 0;
    while (pos < len) {
        size_t at = pos;
        (void)utf8_next(t, len, &pos, &cp);
        size_t cost = gsm ? gsm_septets(cp) : ucs2_units(cp);
        if (used + cost > limit) {
            if (parts && n <= max_parts)
                parts[n - 1] =
                    (nudgel_sms_part_t){.offset = start, .len = at - start, .units = used};
            n++;
            start = at;
            used = 0;
        }
        used += cost;
    }
    if (parts && n <= max_parts)
        parts[n - 1] = (nudgel_sms_part_t){.offset = start, .len = len - start, .units = used};
    info->segments = n;

done:
    if (parts && info->segments > max_parts) {
        snprintf(errstr, errstr_size, "body needs %zu %s parts, more than the limit of %zu",
                 info->segments, nudgel_sms_encoding_name(info->encoding), max_parts);
        return NUDGEL_ERR_TOO_LARGE;
    }
    return NUDGEL_OK;
}

const char *nudgel_sms_encoding_name(nudgel_sms_encoding_t encoding)
{
    switch (encoding) {
    case NUDGEL_SMS_GSM7:
        return "gsm7";
    case NUDGEL_SMS_UCS2:
        return "ucs2";
    }
    return "ucs2";
}

nudgel_err_t nudgel_sms_encoding_measure(const char *text, size_t len, nudgel_sms_info_t *out,
                                         char *errstr, size_t errstr_size)
{
    return analyse(text, len, NULL, 0, out, errstr, errstr_size);
}

nudgel_err_t nudgel_sms_encoding_split(const char *text, size_t len, nudgel_sms_part_t *parts,
                                       size_t max_parts, nudgel_sms_info_t *info, char *errstr,
                                       size_t errstr_size)
{
    if (!parts) {
        snprintf(errstr, errstr_size, "sms_encoding: NULL parts array");
        return NUDGEL_ERR_INVALID_ARG;
    }
    return analyse(text, len, parts, max_parts, info, errstr, errstr_size);
}
